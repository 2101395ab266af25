"""The one module that reads the environment.

Everything else receives a :class:`Settings` (or one of its parts) as an argument. The
options themselves (names, variables, defaults, bounds, help) are the fields of
:class:`~qtaskdist_jupyter.core.options.Options`; docs/configuration.md lists them. Besides
them: the seed worker's ``REDIS_HOST`` / ``REDIS_PORT`` (6379) / ``REDIS_DB`` (0), which
build ``REDIS_URL`` when it is unset; ``QTASKDIST_SERVER_URL`` / ``QTASKDIST_TOKEN`` (the
server's address for the kernels it starts); and the shared service's
``QTASKDIST_SERVICE_*`` and JupyterHub's ``JUPYTERHUB_*`` (:func:`load_service_settings`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from qtaskdist_jupyter.core.errors import ConfigError
from qtaskdist_jupyter.core.options import DEFAULTS as D
from qtaskdist_jupyter.core.options import FIELDS, Options, env_var, on

N = TypeVar("N", int, float)

_PG_SCHEMES = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg3": "postgresql+psycopg",
    # The seed used asyncpg; its URLs have the same shape, so we map them onto psycopg 3
    # instead of carrying a second driver.
    "postgresql+asyncpg": "postgresql+psycopg",
}
_REDIS_SCHEMES = {"redis", "rediss", "unix", "valkey", "valkeys"}
SERVICE_URL = env_var("service_url")


@dataclass(frozen=True)
class Limits:
    """The fields of :class:`Options` tagged ``limit``, with its defaults (typed here for
    the checker; tests/unit/test_options.py checks the two agree)."""

    max_payload_bytes: int = D.max_payload_bytes
    max_qubits: int = D.max_qubits
    max_instructions: int = D.max_instructions
    max_shots: int = D.max_shots
    max_batch_tasks: int = D.max_batch_tasks
    max_result_bytes: int = D.max_result_bytes
    time_limit_s: float = D.time_limit_s
    max_time_limit_s: float = D.max_time_limit_s
    qir_verify_max_qubits: int = D.qir_verify_max_qubits
    qir_verify_shots: int = D.qir_verify_shots
    qir_verify_time_s: float = D.qir_verify_time_s
    label_max_bytes: int = D.label_max_bytes
    label_max_depth: int = D.label_max_depth
    label_max_keys: int = D.label_max_keys
    max_active_tasks: int = D.max_active_tasks
    max_event_streams: int = D.max_event_streams
    priority_max_tasks: int = D.priority_max_tasks
    large_body_bytes: int = D.large_body_bytes
    max_large_bodies: int = D.max_large_bodies
    max_page_bytes: int = D.max_page_bytes
    parse_workers: int = D.parse_workers
    parse_memory_bytes: int = D.parse_memory_bytes
    parse_time_s: float = D.parse_time_s
    provider_options_max_keys: int = D.provider_options_max_keys
    provider_option_max_chars: int = D.provider_option_max_chars
    max_task_memory_bytes: int = D.max_task_memory_bytes
    mps_max_bond_dimension: int = D.mps_max_bond_dimension
    max_stored_tasks: int = D.max_stored_tasks
    retention_s: float = D.retention_s


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    qbraid_api_key: str | None = None
    qbraid_api_url: str | None = None
    home: Path = field(default_factory=lambda: default_home())
    local_workers: int | None = None
    events_maxlen: int = D.events_maxlen
    limits: Limits = field(default_factory=Limits)
    # Seals the events cursors (server_extension/qtaskdist_server/api/cursors.py); None:
    # a random key per server process. Never printed.
    events_cursor_secret: str | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.redis_url is None

    def with_urls(self, database_url: str | None, redis_url: str | None) -> Settings:
        return replace(
            self,
            database_url=normalize_database_url(database_url) if database_url else None,
            redis_url=normalize_redis_url(redis_url) if redis_url else None,
        )


def default_home() -> Path:
    import platformdirs  # lazy: the notebook side imports this module and rarely needs it

    return Path(platformdirs.user_data_dir("qtaskdist", appauthor=False))


def normalize_database_url(url: str) -> str:
    """Return a SQLAlchemy URL for psycopg 3, or raise ConfigError naming the problem."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"DATABASE_URL {url!r} is not a URL; expected postgresql://user@host:5432/dbname"
        )
    mapped = _PG_SCHEMES.get(scheme.lower())
    if mapped is None:
        raise ConfigError(
            f"DATABASE_URL uses the dialect {scheme!r}; qtaskdist needs PostgreSQL. "
            "Use postgresql://, postgresql+psycopg:// or postgresql+asyncpg:// "
            "(asyncpg URLs are mapped to psycopg 3)."
        )
    return f"{mapped}://{rest}"


def libpq_url(sqlalchemy_url: str) -> str:
    """The same URL without the driver suffix, for psycopg / psql."""
    scheme, _, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def normalize_redis_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in _REDIS_SCHEMES:
        raise ConfigError(
            f"REDIS_URL {url!r} has scheme {parts.scheme!r}; expected redis://host:6379/0, "
            "rediss:// or unix:///path/to/socket"
        )
    scheme = {"valkey": "redis", "valkeys": "rediss"}.get(parts.scheme.lower(), parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def _number(
    env: Mapping[str, str], name: str, default: N, parse: Callable[[str], N], minimum: N | None
) -> N:
    """The variable parsed, ``default`` when unset or empty; ``minimum`` None: positive."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError as exc:
        what = "an integer" if parse is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from exc
    if minimum is None and value <= 0:
        raise ConfigError(f"{name}={value} must be positive")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    return _number(env, name, default, int, minimum)


def bound(name: str) -> tuple[str, float] | None:
    """``("ge", n)`` or ``("gt", n)``: the field's lower bound, if any."""
    for item in FIELDS[name].metadata:
        for key in ("ge", "gt"):
            if getattr(item, key, None) is not None:
                return key, getattr(item, key)
    return None


def problem(name: str, raw: str, error_type: str) -> str:
    """The one-line message for a refused value of field ``name`` (``raw`` as given)."""
    var = env_var(name)
    if error_type in ("int_parsing", "int_from_float"):
        return f"{var}={raw!r} is not an integer"
    if error_type == "float_parsing":
        return f"{var}={raw!r} is not a number"
    kind, limit = bound(name) or ("", 0)
    value: object = raw
    try:
        value = float(raw) if "float" in str(FIELDS[name].annotation) else int(raw)
    except ValueError:
        pass
    if kind == "gt" and limit == 0:
        return f"{var}={value} must be positive"
    if kind:
        return f"{var}={value} must be at least {limit:g}"
    return f"{var}={raw!r} is not valid ({error_type})"


def load_options(env: Mapping[str, str] | None = None) -> Options:
    """The options from ``env`` (default: the process's environment); empty means unset.
    A refused value raises :class:`ConfigError` naming the variable."""
    env = os.environ if env is None else env
    given = {env_var(n): env[env_var(n)] for n in FIELDS if env.get(env_var(n))}
    by_var = {env_var(n): n for n in FIELDS}
    try:
        return Options.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        var = str(first["loc"][0])
        raise ConfigError(problem(by_var[var], given[var], first["type"])) from exc


def limits_of(options: Options) -> Limits:
    return Limits(**{name: getattr(options, name) for name in on("limit")})


def load_limits(env: Mapping[str, str]) -> Limits:
    return limits_of(load_options(env))


def redis_url_from_env(env: Mapping[str, str]) -> str | None:
    if env.get("REDIS_URL"):
        return normalize_redis_url(env["REDIS_URL"])
    if env.get("REDIS_HOST"):
        # The seed worker's variables.
        port = _int(env, "REDIS_PORT", 6379, 1)
        db = _int(env, "REDIS_DB", 0, 0)
        return f"redis://{env['REDIS_HOST']}:{port}/{db}"
    return None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    o = load_options(env)
    return Settings(
        database_url=normalize_database_url(o.database_url) if o.database_url else None,
        redis_url=redis_url_from_env(env),
        qbraid_api_key=o.qbraid_api_key,
        qbraid_api_url=o.qbraid_api_url,
        home=o.home.expanduser() if o.home else default_home(),
        local_workers=o.local_workers,
        events_maxlen=o.events_maxlen,
        limits=limits_of(o),
        events_cursor_secret=o.events_cursor_secret,
    )


def kernel_server_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """Where the notebook client goes first, and with which token:
    ``QTASKDIST_SERVER_URL`` / ``QTASKDIST_TOKEN`` (what the server extension exports for
    the kernels it starts), else ``QTASKDIST_SERVICE_URL`` with the user's own
    ``JUPYTERHUB_API_TOKEN`` (a kernel under JupyterHub with a shared service)."""
    env = os.environ if env is None else env
    if env.get("QTASKDIST_SERVER_URL"):
        return env["QTASKDIST_SERVER_URL"], env.get("QTASKDIST_TOKEN") or None
    if env.get(SERVICE_URL):
        return env[SERVICE_URL], env.get("JUPYTERHUB_API_TOKEN") or None
    return None, None


def user_side_service(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(``QTASKDIST_SERVICE_URL``, ``JUPYTERHUB_API_TOKEN``) on a user's server: with a URL
    the extension starts nothing, holds no credentials and forwards the browser's API
    requests to that service with the user's own hub token."""
    env = os.environ if env is None else env
    url = env.get(SERVICE_URL) or None
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{SERVICE_URL}={url!r} is not an http(s) URL")
    return url, env.get("JUPYTERHUB_API_TOKEN") or None


@dataclass(frozen=True)
class ServiceSettings:
    """``qtaskdist service``: where it listens and how it knows who asks."""

    bind: str = "127.0.0.1"
    port: int = 8890
    prefix: str = "/"
    auth: str = "tokens"  # "hub" | "tokens"
    tokens_file: Path | None = None
    admin_group: str | None = None
    auth_cache_s: int = D.service_auth_cache_s


def load_service_settings(env: Mapping[str, str] | None = None) -> ServiceSettings:
    env = os.environ if env is None else env
    o, d = load_options(env), ServiceSettings()
    hub_url = urlsplit(env.get("JUPYTERHUB_SERVICE_URL") or "")
    hub_managed = bool(env.get("JUPYTERHUB_API_TOKEN") and env.get("JUPYTERHUB_API_URL"))
    auth = o.service_auth or ("hub" if hub_managed else "tokens")
    if auth not in ("hub", "tokens"):
        raise ConfigError(f"{env_var('service_auth')}={auth!r}: expected 'hub' or 'tokens'")
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX") or hub_url.path or d.prefix
    return ServiceSettings(
        bind=o.service_bind or hub_url.hostname or d.bind,
        port=o.service_port if o.service_port is not None else hub_url.port or d.port,
        prefix="/" + prefix.strip("/") + "/" if prefix.strip("/") else "/",
        auth=auth,
        tokens_file=o.service_tokens_file.expanduser() if o.service_tokens_file else None,
        admin_group=o.service_admin_group,
        auth_cache_s=o.service_auth_cache_s,
    )
