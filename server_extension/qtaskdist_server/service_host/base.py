"""The shared service's handler base: the configured authenticator decides who asks.

No identity → 403 before the body is read, and nothing is written; the hub unreachable
→ 503 ``auth_unavailable`` (raised by the authenticator)."""

from __future__ import annotations

import logging
from typing import Any

from tornado import web

from .tokens import Identity

LOG = logging.getLogger("qtaskdist.service")


class ServiceBase(web.RequestHandler):
    identity: Identity | None = None

    @property
    def app(self) -> Any:
        return self.settings["qtaskdist"]

    @property
    def log(self) -> logging.Logger:
        return LOG

    @property
    def owner(self) -> str:
        assert self.identity is not None  # prepare() set it or refused the request
        return self.identity.name

    async def is_admin(self) -> bool:
        return self.identity is not None and self.identity.admin

    async def prepare(self) -> None:
        identity = await self.app.auth.identify(self)
        if identity is None:
            raise web.HTTPError(403, "a valid token is required (Authorization: token …)")
        self.identity = identity

    def check_xsrf_cookie(self) -> None:
        """Token requests need no XSRF check; the hub's cookie path checks its own."""
