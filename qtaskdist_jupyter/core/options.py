"""Every qtaskdist option, once: :class:`Options`, a pydantic-settings model.

Each field is one option: its name, type, default, bounds and help text, and its one
environment variable (``QTASKDIST_<NAME>`` unless the field names another, such as
``DATABASE_URL``). The other surfaces are derived from the fields, not copied:

- ``QtaskdistApp``'s traitlets (``qtaskdist_server/traits.py``) for the fields tagged
  ``traitlet``;
- the worker's command-line flags (``qtaskdist_worker.cli``) for the fields tagged ``cli``,
  ``--<name-with-dashes>``;
- :class:`~qtaskdist_jupyter.core.config.Limits` (the fields tagged ``limit``, declared in
  :mod:`.option_limits`), ``Settings`` and ``ServiceSettings`` (tagged ``service``) take
  their defaults from here, and :func:`~qtaskdist_jupyter.core.config.load_options` reads
  the variables;
- the table in docs/configuration.md (:mod:`.options_table`; ``tests/unit/test_options.py``
  checks it is the model's).

Precedence: a traitlet set in Jupyter's config or a flag given on the command line, then
the environment variable, then the default here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasGenerator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from qtaskdist_jupyter.core.option_limits import ENV_PREFIX, LimitOptions, MiB, opt


class Options(LimitOptions, BaseSettings):
    """The options of every runtime: the server, the worker, the shared service, the CLI,
    and the limits (:class:`~.option_limits.LimitOptions`, whose fields come first)."""

    model_config = SettingsConfigDict(
        alias_generator=AliasGenerator(validation_alias=lambda name: ENV_PREFIX + name.upper()),
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    # ---- where the services are --------------------------------------------------------
    database_url: str | None = opt(
        None,
        "PostgreSQL URL; postgresql://, postgres://, postgresql+psycopg:// and "
        "postgresql+asyncpg:// are accepted and mapped to psycopg 3. Unset: embedded.",
        "traitlet",
        "cli",
        env="DATABASE_URL",
    )
    redis_url: str | None = opt(
        None,
        "Redis / Valkey URL: redis://, rediss:// or unix://. Unset: REDIS_HOST (+ REDIS_PORT, "
        "REDIS_DB), else embedded.",
        "traitlet",
        "cli",
        env="REDIS_URL",
    )
    qbraid_api_key: str | None = opt(
        None, "Key for qBraid's cloud (provider tasks on real devices).", env="QBRAID_API_KEY"
    )
    qbraid_api_url: str | None = opt(
        None, "qBraid API base URL (the SDK reads it too).", env="QBRAID_API_URL"
    )
    home: Path | None = opt(
        None,
        "Data directory of the embedded services (default: the user data dir, "
        "~/.local/share/qtaskdist).",
        "traitlet",
    )
    local_workers: int | None = opt(
        None,
        "Worker processes the server starts and stops (default: 1 with the embedded "
        "services, 0 with URLs given).",
        "traitlet",
        ge=0,
    )
    events_maxlen: int = opt(100_000, "Approximate length kept of stream:events.", ge=100)
    events_cursor_secret: str | None = opt(
        None,
        "The key that seals GET events cursors (AES-GCM, bound to their owner); set the "
        "same value on every service process behind one proxy. Unset: a random key per "
        "server process (cursors end with it). Never printed.",
        repr=False,
    )

    # ---- the server (QtaskdistApp) ----------------------------------------------------
    max_batch_bytes: int = opt(
        64 * MiB,
        "Largest POST tasks/batch body; a larger Content-Length is refused (413) before "
        "the body is read.",
        "traitlet",
        ge=1,
    )
    worker_stale_s: float = opt(
        60.0,
        "A worker whose heartbeat is older than this is reported dead (workers beat every "
        "visibility_timeout/3 = 20 s by default; 3 missed beats).",
        "traitlet",
        gt=0,
    )
    events_max_timeout_s: float = opt(30.0, "Longest GET events long poll.", "traitlet", gt=0)
    metrics_cache_s: float = opt(
        5.0, "GET metrics reads PostgreSQL and Redis at most this often.", "traitlet", ge=0
    )
    freeze_gc: bool = opt(
        True,
        "After start-up, move the objects alive then (Jupyter's and qiskit's modules) out "
        "of the garbage collector's reach (gc.freeze): a full collection then skips them.",
        "traitlet",
    )

    # ---- the shared service (qtaskdist service; a user's server under JupyterHub) ------
    service_url: str | None = opt(
        None,
        "On a user's server and in its kernels: the shared qtaskdist service to use (set by "
        "JupyterHub); the extension then starts nothing, holds no credentials and forwards "
        "the table's requests, and kernels call it with their JUPYTERHUB_API_TOKEN.",
    )
    service_auth: str | None = opt(
        None,
        "The service: who a request is, 'hub' (JupyterHub) or 'tokens' (a file of token "
        "hashes); default: 'hub' when JupyterHub started it, else 'tokens'.",
        "service",
    )
    service_tokens_file: Path | None = opt(
        None,
        "The service, tokens: the file of '<sha256> <user> [admin]' lines (qtaskdist hash-token).",
        "service",
    )
    service_admin_group: str | None = opt(
        None,
        "The service, hub: members of this hub group are operators, besides the hub's admins.",
        "service",
    )
    service_auth_cache_s: int = opt(
        10, "The service, hub: seconds a hub answer for a token is reused.", "service", ge=0
    )
    service_bind: str | None = opt(
        None,
        "The service's listen address (default: from JUPYTERHUB_SERVICE_URL, else 127.0.0.1; "
        "its prefix: JUPYTERHUB_SERVICE_PREFIX, else /).",
        "service",
    )
    service_port: int | None = opt(
        None,
        "The service's port (default: from JUPYTERHUB_SERVICE_URL, else 8890).",
        "service",
        ge=0,
    )

    # ---- the worker (qtaskdist-worker) ------------------------------------------------
    concurrency: int | None = opt(
        None,
        "Job processes of the pool lane (simulation, conversion; default: one per usable "
        "core, at most 4).",
        "cli",
        env="QTASKDIST_WORKER_CONCURRENCY",
        gt=0,
    )
    name: str | None = opt(
        None, "The worker's consumer name (default: host-pid).", "cli", env="QTASKDIST_WORKER_NAME"
    )
    batch_size: int = opt(
        128,
        "XREADGROUP COUNT and largest Aer batch.",
        "cli",
        env="QTASKDIST_WORKER_BATCH_SIZE",
        gt=0,
    )
    visibility_timeout_s: float = opt(
        60.0,
        "Idle time after which another worker takes an entry over.",
        "cli",
        env="QTASKDIST_WORKER_VISIBILITY_TIMEOUT_S",
        gt=0,
    )
    burst: bool = opt(
        False,
        "Drain the queued tasks (and due retries), then exit 0.",
        "cli",
        env="QTASKDIST_WORKER_BURST",
    )
    grace_s: float = opt(
        30.0,
        "On SIGTERM, time to finish tasks in flight before releasing them.",
        "cli",
        env="QTASKDIST_WORKER_GRACE_S",
        gt=0,
    )
    retry_base_s: float = opt(
        1.0,
        "First retry delay; doubles per retry, jittered.",
        "cli",
        env="QTASKDIST_WORKER_RETRY_BASE_S",
        gt=0,
    )
    retry_cap_s: float = opt(
        60.0, "Longest retry delay.", "cli", env="QTASKDIST_WORKER_RETRY_CAP_S", gt=0
    )
    reconcile_interval_s: float = opt(
        15.0,
        "How often the reconciler releases the rows of dead workers.",
        "cli",
        env="QTASKDIST_WORKER_RECONCILE_INTERVAL_S",
        gt=0,
    )
    threads_per_job: int = opt(
        1,
        "Aer/OpenMP threads per job process.",
        "cli",
        env="QTASKDIST_WORKER_THREADS_PER_JOB",
        gt=0,
    )
    backend_concurrency: int = opt(
        32,
        "Provider tasks (the backend lane) polled at once.",
        "cli",
        env="QTASKDIST_WORKER_BACKEND_CONCURRENCY",
        gt=0,
    )
    poll_interval_s: float = opt(
        1.0,
        "Longest pause between provider status polls.",
        "cli",
        env="QTASKDIST_WORKER_POLL_INTERVAL_S",
        gt=0,
    )
    job_memory_mb: int | None = opt(
        None,
        "Address space a job process may add to its start-up size (default: "
        "max_task_memory_bytes + max_result_bytes + 512 MiB).",
        "cli",
        env="QTASKDIST_WORKER_JOB_MEMORY_MB",
        gt=0,
    )
    metrics_port: int | None = opt(
        None,
        "Serve the worker's Prometheus metrics on this port (default: off).",
        "cli",
        env="QTASKDIST_WORKER_METRICS_PORT",
        gt=0,
    )
    metrics_addr: str = opt(
        "127.0.0.1",
        "Address of the metrics port (127.0.0.1: this machine only; 0.0.0.0: all interfaces).",
        "cli",
        env="QTASKDIST_WORKER_METRICS_ADDR",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = opt(
        "INFO", "Level of the worker's own log.", "cli", env="QTASKDIST_WORKER_LOG_LEVEL"
    )


FIELDS: dict[str, FieldInfo] = dict(Options.model_fields)
DEFAULTS = Options.model_construct()


def help_of(name: str) -> str:
    """Field ``name``'s help as every surface shows it: the text, the variable, the default."""
    info = FIELDS[name]
    default = "" if info.default is None else f", default {info.default!r}"
    return f"{info.description} [{env_var(name)}{default}]"


def env_var(name: str) -> str:
    """The one environment variable of field ``name``."""
    alias = FIELDS[name].validation_alias
    assert isinstance(alias, str), name
    return alias


def surfaces(name: str) -> list[str]:
    extra = FIELDS[name].json_schema_extra
    assert isinstance(extra, dict), name
    listed = extra["surfaces"]
    assert isinstance(listed, list), name
    return [str(s) for s in listed]


def on(surface: str) -> list[str]:
    """The fields that appear on ``surface`` (``"limit"``, ``"traitlet"``, ``"cli"``)."""
    return [name for name in FIELDS if surface in surfaces(name)]
