"""``GET health``: up/down and the caller's own queue for everyone; fleet internals (workers'
hosts and pids, global stream depths) only for operators, the users the Jupyter
authorizer grants ``admin`` on ``qtaskdist``."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import ensure_async
from tornado import web

from .base import QtaskdistHandler


class HealthHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        operator = await self._is_admin()
        stale_s = self.app.worker_stale_s
        self.json(await self.service.health(self.owner, operator=operator, stale_s=stale_s))

    async def _is_admin(self) -> bool:
        check = self.authorizer.is_authorized(self, self.current_user, "admin", "qtaskdist")
        return bool(await ensure_async(check))
