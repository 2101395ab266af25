"""``GET health``: up/down and the caller's own queue for everyone; fleet internals (workers'
hosts and pids, global stream depths) only for operators, the users the Jupyter
authorizer grants ``admin`` on ``qtaskdist`` or ``admin_users`` names
(:meth:`QtaskdistApp.is_operator`)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import QtaskdistHandler


class HealthHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        operator = await self.is_operator()
        stale_s = self.app.worker_stale_s
        self.json(await self.service.health(self.owner, operator=operator, stale_s=stale_s))
