"""The one module that reads the environment.

Everything else receives a :class:`Settings` (or one of its parts) as an argument.

=========================== ========================================================
variable                    meaning
=========================== ========================================================
``DATABASE_URL``            PostgreSQL URL; ``postgresql://``, ``postgres://``,
                            ``postgresql+psycopg://`` and ``postgresql+asyncpg://``
                            are accepted and mapped to psycopg 3. Unset: embedded.
``REDIS_URL``               ``redis://`` / ``rediss://`` / ``unix://``. Unset, but
                            ``REDIS_HOST`` set: built from ``REDIS_HOST``,
                            ``REDIS_PORT`` (6379), ``REDIS_DB`` (0). Unset: embedded.
``QBRAID_API_KEY``          key for qBraid's cloud (backend_run on real devices)
``QBRAID_API_URL``          qBraid API base URL (the SDK reads it too)
``QTASKDIST_HOME``          data directory of the embedded services
``QTASKDIST_LOCAL_WORKERS`` local worker processes the server starts (embedded: 1)
``QTASKDIST_MAX_PAYLOAD_BYTES``  largest circuit/payload accepted (1 MB)
``QTASKDIST_MAX_QUBITS``         (30)
``QTASKDIST_MAX_INSTRUCTIONS``   instructions after gate expansion (200000)
``QTASKDIST_MAX_SHOTS``          (1000000)
``QTASKDIST_MAX_BATCH_TASKS``    tasks in one batch request (20000)
``QTASKDIST_MAX_RESULT_BYTES``   largest result a task may produce, counted as its
                                 uncompressed arrays (statevector 16 B × 2^n, …);
                                 over it the submit is refused (422) when the size
                                 is known then, else the task fails (512 MiB)
``QTASKDIST_TIME_LIMIT_S``       default execution limit per task (300)
``QTASKDIST_MAX_TIME_LIMIT_S``   cap a task may ask for (3600)
``QTASKDIST_EVENTS_MAXLEN``      approximate length kept of stream:events (100000)
``QTASKDIST_QIR_VERIFY_MAX_QUBITS``  c_qir_convert ``verify: "auto"`` executes modules of up
                                 to this many qubits in qir-runner (20; 0: never by default)
``QTASKDIST_QIR_VERIFY_SHOTS``   qir-runner shots per module when the payload names none (1000)
``QTASKDIST_QIR_VERIFY_TIME_S``  ``verify: "auto"`` takes fewer shots (never under 100), or
                                 skips, when the shots would take longer than this (30)
``QTASKDIST_LABEL_MAX_BYTES``    a task's labels as JSON (16384)
``QTASKDIST_LABEL_MAX_DEPTH``    nesting of labels (8)
``QTASKDIST_LABEL_MAX_KEYS``     keys in a task's labels, all levels (256)
``QTASKDIST_MAX_ACTIVE_TASKS``   pending+queued+running tasks per owner; 429 above (25000)
``QTASKDIST_MAX_EVENT_STREAMS``  open events requests (SSE / long poll) per owner (16)
``QTASKDIST_PRIORITY_MAX_TASKS`` a request of at most this many tasks goes to the
                                 priority stream of its type (8; 0 turns it off)
``QTASKDIST_LARGE_BODY_BYTES``   a request body over this size is a large one (1 MiB)
``QTASKDIST_MAX_LARGE_BODIES``   large bodies per owner being received or checked at
                                 once; 429 above (2)
``QTASKDIST_MAX_PAGE_BYTES``     payload + result bytes one ``GET tasks`` page may
                                 carry; 422 naming the ``limit`` that fits (16 MiB)
``QTASKDIST_SERVICE_URL``        a user's server and kernels: the shared ``qtaskdist
                                 service`` to use (set by JupyterHub in the single-user
                                 environment); the extension then holds no credentials
``QTASKDIST_SERVICE_AUTH``       the service: ``hub`` or ``tokens`` (default: ``hub``
                                 when JupyterHub started it, else ``tokens``)
``QTASKDIST_SERVICE_TOKENS_FILE`` the service, ``tokens``: the file of token hashes
``QTASKDIST_SERVICE_ADMIN_GROUP`` the service, ``hub``: members of this hub group are
                                 operators, besides the hub's admins
``QTASKDIST_SERVICE_AUTH_CACHE_S`` the service, ``hub``: how long a token's answer
                                 from the hub is reused (10)
``QTASKDIST_SERVICE_BIND`` / ``_PORT``  the service's address (default: from
                                 ``JUPYTERHUB_SERVICE_URL``, else 127.0.0.1:8890)
``JUPYTERHUB_SERVICE_PREFIX``    the service's URL prefix (``/``); ``JUPYTERHUB_API_TOKEN``
                                 in a kernel: the user's own credential for the service
``QTASKDIST_PARSE_WORKERS``      child processes that parse submitted circuits (2; 0:
                                 parse in the server process)
``QTASKDIST_PARSE_MEMORY_BYTES`` address space each parse child may add (2 GiB)
``QTASKDIST_PARSE_TIME_S``       deadline of one circuit parse in a child (60)
``QTASKDIST_PROVIDER_OPTIONS_MAX_KEYS``  keys in a backend_run's provider_options (32)
``QTASKDIST_PROVIDER_OPTION_MAX_CHARS``  characters of a provider_options key or
                                 string value (1024)
``QTASKDIST_MAX_TASK_MEMORY_BYTES``  memory one simulate task may use, estimated at submit
                                 (statevector 16 B × 2^n, density matrix 16 B × 4^n; 422
                                 above) and passed to Aer as ``max_memory_mb`` (4 GiB)
``QTASKDIST_MAX_STORED_TASKS``   rows one owner may keep, finished ones included; 429
                                 above (100000; 0: no cap)
``QTASKDIST_RETENTION_S``        finished tasks older than this are deleted with their
                                 arrays by the workers' reconciler and ``qtaskdist gc``
                                 (2592000 = 30 days; 0: keep forever)
=========================== ========================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from qtaskdist_jupyter.core.errors import ConfigError

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


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 1_000_000
    max_qubits: int = 30
    max_instructions: int = 200_000
    max_shots: int = 1_000_000
    max_batch_tasks: int = 20_000
    max_result_bytes: int = 512 * 1024 * 1024
    time_limit_s: float = 300.0
    max_time_limit_s: float = 3600.0
    qir_verify_max_qubits: int = 20
    qir_verify_shots: int = 1000
    qir_verify_time_s: float = 30.0
    label_max_bytes: int = 16_384
    label_max_depth: int = 8
    label_max_keys: int = 256
    # Per owner: enough for one full batch and its follow-ups; a 429 past it.
    max_active_tasks: int = 25_000
    max_event_streams: int = 16
    priority_max_tasks: int = 8
    # Per owner: request bodies over large_body_bytes being received or checked at once.
    large_body_bytes: int = 1024 * 1024
    max_large_bodies: int = 2
    # Stored payload + result bytes of one GET tasks page (include=result / payload).
    max_page_bytes: int = 16 * 1024 * 1024
    # Submitted circuits are parsed in child processes (circuits/sandbox.py).
    parse_workers: int = 2
    parse_memory_bytes: int = 2 * 1024**3
    parse_time_s: float = 60.0
    provider_options_max_keys: int = 32
    provider_option_max_chars: int = 1024
    # A 27-qubit statevector (2 GiB) fits, a 28-qubit one (4 GiB) is the largest, and two
    # tasks at the cap stay far from a 16-24 GiB host's memory.
    max_task_memory_bytes: int = 4 * 1024**3
    # matrix_product_state: Aer's matrix_product_state_max_bond_dimension, which bounds
    # its memory (core/budget.py); past it Aer truncates (an approximate result).
    mps_max_bond_dimension: int = 512
    max_stored_tasks: int = 100_000
    retention_s: float = 30 * 86_400.0


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    qbraid_api_key: str | None = None
    qbraid_api_url: str | None = None
    home: Path = field(default_factory=lambda: default_home())
    local_workers: int | None = None
    events_maxlen: int = 100_000
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


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, None)


def load_limits(env: Mapping[str, str]) -> Limits:
    d = Limits()
    return Limits(
        max_payload_bytes=_int(env, "QTASKDIST_MAX_PAYLOAD_BYTES", d.max_payload_bytes, 1),
        max_qubits=_int(env, "QTASKDIST_MAX_QUBITS", d.max_qubits, 1),
        max_instructions=_int(env, "QTASKDIST_MAX_INSTRUCTIONS", d.max_instructions, 1),
        max_shots=_int(env, "QTASKDIST_MAX_SHOTS", d.max_shots, 1),
        max_batch_tasks=_int(env, "QTASKDIST_MAX_BATCH_TASKS", d.max_batch_tasks, 1),
        max_result_bytes=_int(env, "QTASKDIST_MAX_RESULT_BYTES", d.max_result_bytes, 1),
        time_limit_s=_float(env, "QTASKDIST_TIME_LIMIT_S", d.time_limit_s),
        max_time_limit_s=_float(env, "QTASKDIST_MAX_TIME_LIMIT_S", d.max_time_limit_s),
        qir_verify_max_qubits=_int(
            env, "QTASKDIST_QIR_VERIFY_MAX_QUBITS", d.qir_verify_max_qubits, 0
        ),
        qir_verify_shots=_int(env, "QTASKDIST_QIR_VERIFY_SHOTS", d.qir_verify_shots, 100),
        qir_verify_time_s=_float(env, "QTASKDIST_QIR_VERIFY_TIME_S", d.qir_verify_time_s),
        label_max_bytes=_int(env, "QTASKDIST_LABEL_MAX_BYTES", d.label_max_bytes, 2),
        label_max_depth=_int(env, "QTASKDIST_LABEL_MAX_DEPTH", d.label_max_depth, 1),
        label_max_keys=_int(env, "QTASKDIST_LABEL_MAX_KEYS", d.label_max_keys, 0),
        max_active_tasks=_int(env, "QTASKDIST_MAX_ACTIVE_TASKS", d.max_active_tasks, 1),
        max_event_streams=_int(env, "QTASKDIST_MAX_EVENT_STREAMS", d.max_event_streams, 1),
        priority_max_tasks=_int(env, "QTASKDIST_PRIORITY_MAX_TASKS", d.priority_max_tasks, 0),
        large_body_bytes=_int(env, "QTASKDIST_LARGE_BODY_BYTES", d.large_body_bytes, 1),
        max_large_bodies=_int(env, "QTASKDIST_MAX_LARGE_BODIES", d.max_large_bodies, 1),
        max_page_bytes=_int(env, "QTASKDIST_MAX_PAGE_BYTES", d.max_page_bytes, 1),
        parse_workers=_int(env, "QTASKDIST_PARSE_WORKERS", d.parse_workers, 0),
        parse_memory_bytes=_int(
            env, "QTASKDIST_PARSE_MEMORY_BYTES", d.parse_memory_bytes, 64 * 1024**2
        ),
        parse_time_s=_float(env, "QTASKDIST_PARSE_TIME_S", d.parse_time_s),
        provider_options_max_keys=_int(
            env, "QTASKDIST_PROVIDER_OPTIONS_MAX_KEYS", d.provider_options_max_keys, 0
        ),
        provider_option_max_chars=_int(
            env, "QTASKDIST_PROVIDER_OPTION_MAX_CHARS", d.provider_option_max_chars, 1
        ),
        max_task_memory_bytes=_int(
            env, "QTASKDIST_MAX_TASK_MEMORY_BYTES", d.max_task_memory_bytes, 1
        ),
        mps_max_bond_dimension=_int(
            env, "QTASKDIST_MPS_MAX_BOND_DIMENSION", d.mps_max_bond_dimension, 1
        ),
        max_stored_tasks=_int(env, "QTASKDIST_MAX_STORED_TASKS", d.max_stored_tasks, 0),
        retention_s=_number(env, "QTASKDIST_RETENTION_S", d.retention_s, float, 0.0),
    )


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
    db = env.get("DATABASE_URL")
    home = Path(env["QTASKDIST_HOME"]).expanduser() if env.get("QTASKDIST_HOME") else None
    local_workers = env.get("QTASKDIST_LOCAL_WORKERS")
    return Settings(
        database_url=normalize_database_url(db) if db else None,
        redis_url=redis_url_from_env(env),
        qbraid_api_key=env.get("QBRAID_API_KEY") or None,
        qbraid_api_url=env.get("QBRAID_API_URL") or None,
        home=home or default_home(),
        local_workers=_int(env, "QTASKDIST_LOCAL_WORKERS", 0) if local_workers else None,
        events_maxlen=_int(env, "QTASKDIST_EVENTS_MAXLEN", 100_000, 100),
        limits=load_limits(env),
        events_cursor_secret=env.get("QTASKDIST_EVENTS_CURSOR_SECRET") or None,
    )


def kernel_server_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """Where the notebook client goes first, and with which token:
    ``QTASKDIST_SERVER_URL`` / ``QTASKDIST_TOKEN`` (what the server extension exports for
    the kernels it starts), else ``QTASKDIST_SERVICE_URL`` with the user's own
    ``JUPYTERHUB_API_TOKEN`` (a kernel under JupyterHub with a shared service)."""
    env = os.environ if env is None else env
    if env.get("QTASKDIST_SERVER_URL"):
        return env["QTASKDIST_SERVER_URL"], env.get("QTASKDIST_TOKEN") or None
    if env.get("QTASKDIST_SERVICE_URL"):
        return env["QTASKDIST_SERVICE_URL"], env.get("JUPYTERHUB_API_TOKEN") or None
    return None, None


def user_side_service(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(``QTASKDIST_SERVICE_URL``, ``JUPYTERHUB_API_TOKEN``) on a user's server: with a URL
    the extension starts nothing, holds no credentials and forwards the browser's API
    requests to that service with the user's own hub token."""
    env = os.environ if env is None else env
    url = env.get("QTASKDIST_SERVICE_URL") or None
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"QTASKDIST_SERVICE_URL={url!r} is not an http(s) URL")
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
    auth_cache_s: int = 10


def load_service_settings(env: Mapping[str, str] | None = None) -> ServiceSettings:
    env = os.environ if env is None else env
    d = ServiceSettings()
    hub_url = urlsplit(env.get("JUPYTERHUB_SERVICE_URL") or "")
    hub_managed = bool(env.get("JUPYTERHUB_API_TOKEN") and env.get("JUPYTERHUB_API_URL"))
    auth = env.get("QTASKDIST_SERVICE_AUTH") or ("hub" if hub_managed else "tokens")
    if auth not in ("hub", "tokens"):
        raise ConfigError(f"QTASKDIST_SERVICE_AUTH={auth!r}: expected 'hub' or 'tokens'")
    tokens_file = env.get("QTASKDIST_SERVICE_TOKENS_FILE")
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX") or hub_url.path or d.prefix
    return ServiceSettings(
        bind=env.get("QTASKDIST_SERVICE_BIND") or hub_url.hostname or d.bind,
        port=_int(env, "QTASKDIST_SERVICE_PORT", hub_url.port or d.port, 0),
        prefix="/" + prefix.strip("/") + "/" if prefix.strip("/") else "/",
        auth=auth,
        tokens_file=Path(tokens_file).expanduser() if tokens_file else None,
        admin_group=env.get("QTASKDIST_SERVICE_ADMIN_GROUP") or None,
        auth_cache_s=_int(env, "QTASKDIST_SERVICE_AUTH_CACHE_S", d.auth_cache_s, 0),
    )
