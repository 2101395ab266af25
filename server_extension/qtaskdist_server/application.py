"""The jupyter-server extension: settings, bootstrap, local workers, kernel discovery.

Loading order (``initialize_settings``, run once while the server initializes):
resolve the settings (starting or joining the embedded PostgreSQL + Valkey when a URL is
missing) → run the migrations → build the :class:`TaskService` → start the local worker
processes → export the server URL and token for the kernels this server will start.
Everything blocking runs before the server serves its first request, so no handler ever
waits on it; the parts that may call ``asyncio.run`` (embedded bootstrap, Alembic) run in
a worker thread because the server's loop may already be running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.auth.authorizer import AllowAllAuthorizer, Authorizer
from jupyter_server.auth.identity import (
    IdentityProvider,
    LegacyIdentityProvider,
    PasswordIdentityProvider,
)
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import ensure_async
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_fixed
from traitlets import Dict, Enum, List, Unicode, default

from qtaskdist_jupyter.core import config, migrate
from qtaskdist_jupyter.core.config import Limits, Settings
from qtaskdist_jupyter.core.embedded import services as emb
from qtaskdist_jupyter.core.errors import ConfigError, DatabaseUnavailable
from qtaskdist_jupyter.core.runtime import freeze_startup_heap
from qtaskdist_server.api import access
from qtaskdist_server.api.service import TaskService

from .api.cursors import CursorSealer, cursor_key
from .base import API, bind
from .events import StreamCounter
from .extension_base import ExtensionBase
from .forward import ServiceProxy, forward_handlers
from .handlers import default_handlers
from .metrics import ServerMetrics
from .traits import OptionTraits

if TYPE_CHECKING:  # the extension never starts a server itself
    from jupyter_server.serverapp import ServerApp

# What the notebook side reads to find this server with no configuration.
SERVER_URL_ENV = "QTASKDIST_SERVER_URL"
TOKEN_ENV = "QTASKDIST_TOKEN"
T = TypeVar("T")


def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


class QtaskdistApp(ExtensionApp, OptionTraits):
    name = "qtaskdist_server"
    # Configured as ServerApp extension only; it never launches a server of its own.
    load_other_extensions = True

    # database_url, redis_url, home, local_workers, max_active_tasks, max_event_streams,
    # max_batch_bytes, worker_stale_s, events_max_timeout_s, metrics_cache_s, freeze_gc:
    # derived from the settings model (traits.py, core/options.py).
    limits = Dict(
        config=True,
        help="Overrides of qtaskdist_jupyter.core.config.Limits fields, e.g. {'max_shots': 10000}.",
    )
    owner_from = Enum(
        ["auto", "username", "server"],
        "auto",
        config=True,
        help="Who owns a task. 'username': the Jupyter user's username (JupyterHub and other "
        "multi-user identity providers). 'server': one owner, server_owner, for every client "
        "of this server; jupyter_server's own token identity hands each token client a fresh "
        "anonymous user, so the kernel and the browser of one person would not see each "
        "other's tasks. 'auto': 'server' with jupyter_server's own identity providers.",
    )
    server_owner = Unicode(config=True, help="The owner in 'server' mode (the OS user).")
    admin_users = List(
        Unicode(),
        config=True,
        help="Usernames who are qtaskdist operators (GET metrics, the fleet in GET health, "
        "workers' names in task rows). Besides them, a user is an operator when the "
        "authorizer grants 'admin' on 'qtaskdist'; jupyter_server's default authorizer "
        "grants it only on a single-user server ('server' owner mode), so with a "
        "multi-user identity provider nobody is an operator until configured.",
    )

    @default("server_owner")
    def _default_server_owner(self) -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "jupyter"

    # ---- state set up by initialize_settings ------------------------------------------
    settings_obj: Settings
    service: TaskService
    metrics: ServerMetrics
    event_streams: StreamCounter
    cursors: CursorSealer
    workers: list[subprocess.Popen[bytes]]
    _embedded_held: bool = False
    _migrated: bool = False
    _migrator: Any = None
    _owner_mode: str = "username"
    proxy: ServiceProxy | None = None

    def resolved_settings(self) -> Settings:
        """Traitlets over the environment (config.load_settings)."""
        base = config.load_settings()
        s = base.with_urls(self.database_url or base.database_url, self.redis_url or base.redis_url)
        if self.home:
            s = dataclasses.replace(s, home=Path(self.home).expanduser())
        if self.limits:
            known = {f.name for f in dataclasses.fields(Limits)}
            bad = sorted(set(self.limits) - known)
            if bad:
                raise ConfigError(f"QtaskdistApp.limits: unknown limits {bad}; known: {known}")
            s = dataclasses.replace(s, limits=dataclasses.replace(s.limits, **self.limits))
        # The two quota traitlets default to the environment (the limits already read):
        # only a value configured apart from it overrides QtaskdistApp.limits.
        quotas = {
            k: getattr(self, k)
            for k in ("max_active_tasks", "max_event_streams")
            if getattr(self, k) not in (None, getattr(base.limits, k))
        }
        if quotas:
            s = dataclasses.replace(s, limits=dataclasses.replace(s.limits, **quotas))
        return s

    def initialize_settings(self) -> None:
        service_url, hub_token = config.user_side_service()
        if service_url is not None:
            self._use_shared_service(service_url, hub_token)
            return
        settings = self.resolved_settings()
        embedded = settings.embedded
        if embedded:
            svc = _in_thread(emb.ensure_services, settings.home)
            settings = settings.with_urls(
                settings.database_url or svc.database_url, settings.redis_url or svc.redis_url
            )
            # This server holds a lease on the pair; the last holder out stops it.
            self._embedded_held = True
            self.log.info(
                "qtaskdist: embedded services under %s (%s)",
                settings.home,
                "started" if svc.started_now else "joined",
            )
        assert settings.database_url and settings.redis_url
        self.settings_obj = settings
        self.event_streams = StreamCounter()
        self.cursors = CursorSealer(cursor_key(settings.events_cursor_secret))
        self.metrics = ServerMetrics()
        self._migrated = self._try_migrate()
        self.service = TaskService.from_settings(settings, pool_size=10)
        self._owner_mode = self._resolve_owner_mode()

        n = self.local_workers
        if n is None:
            n = settings.local_workers if settings.local_workers is not None else int(embedded)
        self.workers = [self._start_worker(i) for i in range(n)]
        self.export_kernel_env()
        self.log.info(
            "qtaskdist: API at %sqtaskdist/api/ (%d local workers, owner mode %s)",
            self._server().base_url,
            n,
            self._owner_mode,
        )

    def initialize_handlers(self) -> None:
        if self.proxy is not None:
            self.handlers.extend(forward_handlers(API))
        else:
            self.handlers.extend(bind(default_handlers, ExtensionBase))

    def _use_shared_service(self, service_url: str, hub_token: str | None) -> None:
        """Under JupyterHub with a shared service: no embedded services, no workers, no
        migrations, no credentials; the browser's API requests go to the service with
        this user's own hub token, and kernels call it directly (QTASKDIST_SERVICE_URL
        with their JUPYTERHUB_API_TOKEN)."""
        if not hub_token:
            raise ConfigError(
                "QTASKDIST_SERVICE_URL is set but JUPYTERHUB_API_TOKEN is not: the shared "
                "service needs this user's hub token (run the server under JupyterHub)"
            )
        held = [n for n in ("DATABASE_URL", "REDIS_URL") if os.environ.get(n)]
        if held:
            self.log.warning(
                "qtaskdist: %s set in a user's server that uses a shared service; its kernels "
                "can read it: remove it from the single-user environment",
                " and ".join(held),
            )
        self.proxy = ServiceProxy(service_url, hub_token)
        self.workers = []
        for name in (SERVER_URL_ENV, TOKEN_ENV):
            os.environ.pop(name, None)  # kernels use QTASKDIST_SERVICE_URL instead
        self.log.info("qtaskdist: using the shared service at %s", service_url)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        if self.proxy is not None:
            return
        # The port is final only once the HTTP server is bound.
        self.export_kernel_env()
        if self.freeze_gc:
            freeze_startup_heap()
        if not self._migrated:
            self._migrator = asyncio.ensure_future(self._migrate_until_done())

    def _try_migrate(self) -> bool:
        """Migrate now; a database that is down must not keep the server from starting
        (the API answers 503 until it is back)."""
        try:
            _in_thread(migrate.upgrade, self.settings_obj.database_url)
            return True
        except DatabaseUnavailable as exc:
            self.log.error("qtaskdist: %s; will retry the migration", exc.message)
            return False

    async def _migrate_until_done(self, every_s: float = 10.0) -> None:
        """Migrate every ``every_s`` while the database is down (start-up made the first
        try). tenacity retries DatabaseUnavailable only: any other error ends it."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(DatabaseUnavailable),
            wait=wait_fixed(every_s),
            before_sleep=self._log_migration_retry,
            reraise=True,
        )
        await asyncio.sleep(every_s)
        await retrying(asyncio.to_thread, migrate.upgrade, self.settings_obj.database_url)
        self._migrated = True

    def _log_migration_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        message = exc.message if isinstance(exc, DatabaseUnavailable) else str(exc)
        self.log.error("qtaskdist: %s; will retry the migration", message)

    def _server(self) -> ServerApp:
        """The jupyter server this extension was loaded into (set before any hook runs)."""
        assert self.serverapp is not None, "the extension is not loaded into a server"
        return self.serverapp

    # ---- owner ---------------------------------------------------------------------
    def _resolve_owner_mode(self) -> str:
        if self.owner_from != "auto":
            return str(self.owner_from)
        own = (IdentityProvider, PasswordIdentityProvider, LegacyIdentityProvider)
        return "server" if type(self._server().identity_provider) in own else "username"

    def owner_of(self, user: Any) -> str:
        if self._owner_mode == "server":
            return self.server_owner
        return str(user.username)

    async def is_operator(self, handler: Any) -> bool:
        """Whether the handler's user is an operator (access.is_operator)."""
        user = handler.current_user
        if user is None:
            return False
        authorizer = handler.authorizer
        granted = await ensure_async(authorizer.is_authorized(handler, user, "admin", "qtaskdist"))
        return access.is_operator(
            username=str(user.username),
            admin_users=frozenset(self.admin_users),
            granted=bool(granted),
            single_user=self._owner_mode == "server",
            default_authorizer=type(authorizer) in (Authorizer, AllowAllAuthorizer),
        )

    # ---- kernel discovery ----------------------------------------------------------
    def export_kernel_env(self) -> None:
        """Kernels inherit the server's environment, so they find the API with no config."""
        server = self._server()
        os.environ[SERVER_URL_ENV] = server.connection_url
        token = getattr(server.identity_provider, "token", "") or ""
        if token:
            os.environ[TOKEN_ENV] = token
        else:
            os.environ.pop(TOKEN_ENV, None)

    # ---- local workers -------------------------------------------------------------
    def _start_worker(self, i: int) -> subprocess.Popen[bytes]:
        s = self.settings_obj
        env = {**os.environ, "DATABASE_URL": s.database_url or "", "REDIS_URL": s.redis_url or ""}
        # The pid keeps names unique when several servers share one Redis.
        name = f"local-{os.getpid()}-{i}"
        cmd = [sys.executable, "-m", "qtaskdist_worker", "--name", name]
        self.log.info("qtaskdist: starting local worker %s", name)
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)

    def stop_workers(self, timeout_s: float = 10.0) -> None:
        procs = [p for p in getattr(self, "workers", []) if p.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.warning("qtaskdist: worker pid %d ignored SIGTERM; killing it", p.pid)
                p.kill()
                p.wait()
        self.workers = []

    async def stop_extension(self) -> None:
        if self.proxy is not None:
            await self.proxy.close()
        if self._migrator is not None:
            self._migrator.cancel()
        await asyncio.to_thread(self.stop_workers)
        if getattr(self, "service", None) is not None:
            await self.service.close()
            del self.service  # closed: getattr(self, "service", None) is None again
        if self._embedded_held:
            stopped = await asyncio.to_thread(emb.release_services, self.settings_obj.home)
            self.log.info(
                "qtaskdist: released the embedded services%s",
                " (last holder: stopped them)" if stopped else " (others still hold them)",
            )
            self._embedded_held = False
