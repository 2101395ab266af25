"""The shared service process: settings → migrations → :class:`TaskService` → a tornado
application with the API under ``{prefix}qtaskdist/api/`` → serve until SIGTERM / SIGINT.

It needs ``DATABASE_URL`` and ``REDIS_URL``: it never starts embedded services or local
workers (workers run on their own hosts, ``qtaskdist-worker``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from tornado import web

from qtaskdist_jupyter.core import migrate
from qtaskdist_jupyter.core.config import ServiceSettings, Settings
from qtaskdist_jupyter.core.errors import ConfigError
from qtaskdist_jupyter.core.runtime import freeze_startup_heap
from qtaskdist_server.api.service import TaskService

from ..api.cursors import CursorSealer, cursor_key
from ..base import bind
from ..events import StreamCounter
from ..handlers import default_handlers
from ..metrics import ServerMetrics
from .base import LOG, ServiceBase
from .tokens import StaticTokens


@dataclass
class ServiceHost:
    """What the handlers reach as ``self.app`` (the extension offers the same names)."""

    service: TaskService
    auth: Any
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    event_streams: StreamCounter = field(default_factory=StreamCounter)
    cursors: CursorSealer | None = None  # from the service's settings when not given
    max_batch_bytes: int = 64 * 1024 * 1024
    events_max_timeout_s: float = 30.0
    worker_stale_s: float = 60.0
    metrics_cache_s: float = 5.0

    def __post_init__(self) -> None:
        if self.cursors is None:
            secret = self.service.settings.events_cursor_secret
            self.cursors = CursorSealer(cursor_key(secret))


def make_auth(s: ServiceSettings) -> tuple[Any, type[web.RequestHandler]]:
    """The authenticator and the handler base it needs."""
    if s.auth == "tokens":
        if s.tokens_file is None:
            raise ConfigError(
                "qtaskdist service with QTASKDIST_SERVICE_AUTH=tokens needs "
                "QTASKDIST_SERVICE_TOKENS_FILE (lines from `qtaskdist hash-token`)"
            )
        return StaticTokens(s.tokens_file), ServiceBase
    from .hub import HubBase, HubTokens  # jupyterhub: only a hub deployment needs it

    return HubTokens(s.auth_cache_s, s.admin_group), HubBase


def make_app(host: ServiceHost, base: type[web.RequestHandler], prefix: str) -> web.Application:
    handlers = bind(default_handlers, base, prefix) + host.auth.extra_handlers(prefix)
    return web.Application(handlers, qtaskdist=host, **host.auth.app_settings())


def require_urls(settings: Settings) -> tuple[str, str]:
    if settings.database_url is None or settings.redis_url is None:
        raise ConfigError(
            "qtaskdist service needs DATABASE_URL and REDIS_URL (it starts no embedded "
            "services): point them at the team's PostgreSQL and Redis"
        )
    return settings.database_url, settings.redis_url


async def serve(settings: Settings, s: ServiceSettings) -> None:
    database_url, _ = require_urls(settings)
    auth, base = make_auth(s)
    await asyncio.to_thread(migrate.upgrade, database_url)
    host = ServiceHost(TaskService.from_settings(settings, pool_size=10), auth)
    server = make_app(host, base, s.prefix).listen(s.port, address=s.bind, xheaders=True)
    freeze_startup_heap()
    where = f"http://{s.bind}:{s.port}{s.prefix}qtaskdist/api/"
    LOG.info("qtaskdist service: API at %s (%s auth)", where, s.auth)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.stop()
        await host.service.close()
        LOG.info("qtaskdist service: stopped")


def run(settings: Settings, s: ServiceSettings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(settings, s))
    return 0
