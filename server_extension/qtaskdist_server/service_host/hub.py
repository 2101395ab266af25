"""``QTASKDIST_SERVICE_AUTH=hub``: identities from JupyterHub.

A request's token (``Authorization: token …`` / ``Bearer …``, or the OAuth cookie a
browser got through ``{prefix}oauth_callback``) is resolved by the hub
(``GET /hub/api/user``, via :class:`jupyterhub.services.auth.HubOAuth`), and the answer is
reused for ``QTASKDIST_SERVICE_AUTH_CACHE_S`` seconds, so the hub is not asked once per
request; a token revoked at the hub stops working within that time. The identity is the
hub user; operators are the hub's admins and the members of
``QTASKDIST_SERVICE_ADMIN_GROUP``. A token must carry the service's access scope
(``access:services!service=qtaskdist``), and tokens of services are refused: a service
named like a user must not become that user.

HubOAuth reads the hub's variables itself (``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_CLIENT_ID``, ``JUPYTERHUB_OAUTH_CALLBACK_URL``,
``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_OAUTH_ACCESS_SCOPES``), which the hub sets
for a service it manages.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, TypedDict

from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    check_scopes,
)
from tornado import web

from qtaskdist_jupyter.core.errors import AuthUnavailable

from .base import ServiceBase
from .tokens import HostSettings, Identity


class HubUser(TypedDict, total=False):
    """The hub's model of a token's owner (``GET /hub/api/user``), the keys read here."""

    kind: str  # "user", or "service" for a service's token
    name: str
    admin: bool
    groups: list[str]
    scopes: list[str]


def hub_identity(
    model: HubUser | None, access_scopes: Iterable[str], admin_group: str | None
) -> Identity | None:
    """The hub's answer for a token → who asks, or None (refused)."""
    name = model.get("name") if model else None
    if not model or model.get("kind", "user") != "user" or not name:
        return None
    needed = set(access_scopes)
    if needed and not check_scopes(needed, set(model.get("scopes") or ())):
        return None
    admin = bool(model.get("admin")) or (
        admin_group is not None and admin_group in (model.get("groups") or ())
    )
    return Identity(str(name), admin=admin)


class HubTokens:
    def __init__(self, cache_s: int, admin_group: str | None) -> None:
        # The process's one HubOAuth: the OAuth callback handler finds it as .instance().
        # A token in a URL ends up in logs and histories: only the header or the cookie.
        self.hub_auth = HubOAuth.instance(cache_max_age=cache_s, allow_token_in_url=False)
        self.admin_group = admin_group
        self.cookie_secret = secrets.token_bytes(32)  # OAuth cookies last one process

    async def identify(self, handler: Any) -> Identity | None:
        try:
            model = await self.hub_auth.get_user(handler, sync=False)
        except web.HTTPError as exc:  # HubAuth: 500 no connection, 502 the hub failed
            handler.log.warning("qtaskdist service: the hub did not answer: %s", exc.log_message)
            raise AuthUnavailable(
                "the hub that checks tokens is unreachable", reason=f"hub_http_{exc.status_code}"
            ) from exc
        return hub_identity(model, self.hub_auth.access_scopes, self.admin_group)

    def extra_handlers(self, prefix: str) -> list[tuple[str, Any]]:
        return [
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "whoami", WhoAmIHandler),
        ]

    def app_settings(self) -> HostSettings:
        return {"cookie_secret": self.cookie_secret}


class HubBase(HubOAuthenticated, ServiceBase):
    """ServiceBase with JupyterHub's XSRF handling for OAuth cookies (a handler that is
    ``HubOAuthenticated`` keeps HubOAuth from patching tornado's RequestHandler)."""


class WhoAmIHandler(HubOAuthenticated, web.RequestHandler):
    """``GET {prefix}whoami``: where a browser signs in (redirected through hub OAuth)."""

    @web.authenticated
    def get(self) -> None:
        user = self.current_user
        self.set_header("Content-Type", "application/json")
        self.finish({"name": user["name"], "kind": user.get("kind", "user")})
