"""The jupyter-server extension's handler base: jupyter_server's identity provider and
authorizer decide who asks (``owner``) and what they may do.

The handler logic (handlers.py, events.py, …) is bound onto this base
(:func:`.base.bind`), so the same classes serve the shared service on its own base.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import ensure_async
from tornado import web

RESOURCE = "qtaskdist"


class ExtensionBase(ExtensionHandlerMixin, APIHandler):
    """What ``@web.authenticated @authorized`` did per method, once in ``prepare``: 403
    for no user or a user the authorizer refuses, before the body is read."""

    @property
    def app(self) -> Any:
        return self.extensionapp

    @property
    def owner(self) -> str:
        return self.app.owner_of(self.current_user)

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "OPTIONS":
            return  # a CORS preflight: APIHandler answers it, as before
        user = self.current_user
        if not user:
            raise web.HTTPError(403)
        action = HTTP_METHOD_TO_AUTH_ACTION[self.request.method or "GET"]
        if not await ensure_async(self.authorizer.is_authorized(self, user, action, RESOURCE)):
            raise web.HTTPError(
                403, f"user {user.username} is not authorized to {action} on {RESOURCE}"
            )

    async def is_admin(self) -> bool:
        """An operator: ``admin_users``, or ``admin`` granted by a configured authorizer
        (QtaskdistApp.is_operator)."""
        return bool(await self.app.is_operator(self))
