"""``GET health``: up/down and the caller's own queue for everyone; fleet internals (workers'
hosts and pids, global stream depths) only for operators: the host decides who is one
(the extension: whom the Jupyter authorizer grants ``admin`` on ``qtaskdist``; the shared
service: hub admins, a configured hub group, or static tokens marked ``admin``)."""

from __future__ import annotations

from .base import QtaskdistHandler


class HealthHandler(QtaskdistHandler):
    async def get(self) -> None:
        operator = await self.is_operator()
        stale_s = self.app.worker_stale_s
        self.json(await self.service.health(self.owner, operator=operator, stale_s=stale_s))
