"""Every qtaskdist option, once: :class:`Options`, a pydantic-settings model.

Each field is one option: its name, type, default, bounds and help text, and its one
environment variable (``QTASKDIST_<NAME>`` unless the field names another, such as
``DATABASE_URL``). The other surfaces are derived from the fields, not copied:

- ``QtaskdistApp``'s traitlets (``qtaskdist_server.options.traitlets_of``) for the fields
  tagged ``traitlet``;
- the worker's command-line flags (``qtaskdist_worker.cli``) for the fields tagged ``cli``,
  ``--<name-with-dashes>``;
- :class:`~qtaskdist_jupyter.core.config.Limits` and ``Settings`` take their defaults from
  here, and :func:`~qtaskdist_jupyter.core.config.load_options` reads the variables;
- the table in docs/configuration.md (:mod:`.options_table`; ``tests/unit/test_options.py``
  checks it is the model's).

Precedence: a traitlet set in Jupyter's config or a flag given on the command line, then
the environment variable, then the default here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasGenerator, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "QTASKDIST_"
MiB = 1024 * 1024
GiB = 1024 * MiB


def _opt(default: Any, help: str, *surfaces: str, env: str | None = None, **bounds: Any) -> Any:
    """A field: its default, help, the surfaces besides the environment it appears on
    (``"limit"``: a field of ``Limits``; ``"traitlet"``; ``"cli"``), an environment variable
    other than ``QTASKDIST_<NAME>``, and bounds (``ge``, ``gt``)."""
    extra: dict[str, Any] = {"surfaces": list(surfaces)}
    return Field(default, description=help, validation_alias=env, json_schema_extra=extra, **bounds)


class Options(BaseSettings):
    """The options of every runtime: the server, the worker, the CLI and the kernels' limits."""

    model_config = SettingsConfigDict(
        alias_generator=AliasGenerator(validation_alias=lambda name: ENV_PREFIX + name.upper()),
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    # ---- where the services are --------------------------------------------------------
    database_url: str | None = _opt(
        None,
        "PostgreSQL URL; postgresql://, postgres://, postgresql+psycopg:// and "
        "postgresql+asyncpg:// are accepted and mapped to psycopg 3. Unset: embedded.",
        "traitlet",
        "cli",
        env="DATABASE_URL",
    )
    redis_url: str | None = _opt(
        None,
        "Redis / Valkey URL: redis://, rediss:// or unix://. Unset: REDIS_HOST (+ REDIS_PORT, "
        "REDIS_DB), else embedded.",
        "traitlet",
        "cli",
        env="REDIS_URL",
    )
    qbraid_api_key: str | None = _opt(
        None, "Key for qBraid's cloud (provider tasks on real devices).", env="QBRAID_API_KEY"
    )
    qbraid_api_url: str | None = _opt(
        None, "qBraid API base URL (the SDK reads it too).", env="QBRAID_API_URL"
    )
    home: Path | None = _opt(
        None,
        "Data directory of the embedded services (default: the user data dir, "
        "~/.local/share/qtaskdist).",
        "traitlet",
    )
    local_workers: int | None = _opt(
        None,
        "Worker processes the server starts and stops (default: 1 with the embedded "
        "services, 0 with URLs given).",
        "traitlet",
        ge=0,
    )
    events_maxlen: int = _opt(100_000, "Approximate length kept of stream:events.", ge=100)
    events_cursor_secret: str | None = _opt(
        None,
        "The key that seals GET events cursors (AES-GCM, bound to their owner); set the "
        "same value on every service process behind one proxy. Unset: a random key per "
        "server process (cursors end with it). Never printed.",
        repr=False,
    )

    # ---- limits (Limits) ---------------------------------------------------------------
    max_payload_bytes: int = _opt(
        1_000_000, "Largest circuit/payload accepted (413 above).", "limit", ge=1
    )
    max_qubits: int = _opt(
        30, "Most qubits of a circuit and of every circuit nested in it.", "limit", ge=1
    )
    max_instructions: int = _opt(
        200_000,
        "Most instructions of a circuit, after expanding user gate definitions and "
        "unrolling for loops.",
        "limit",
        ge=1,
    )
    max_shots: int = _opt(1_000_000, "Most shots of a task.", "limit", ge=1)
    max_batch_tasks: int = _opt(20_000, "Tasks in one batch request.", "limit", ge=1)
    max_result_bytes: int = _opt(
        512 * MiB,
        "Largest result a task may produce: its arrays uncompressed (statevector "
        "16 B x 2^n) and its counts as JSON (bounded at submit by min(shots, 2^clbits) "
        "keys); refused at submit (422) when the bound passes it, else the task fails.",
        "limit",
        ge=1,
    )
    time_limit_s: float = _opt(300.0, "Default execution limit per task.", "limit", gt=0)
    max_time_limit_s: float = _opt(
        3600.0, "Cap on the time limit a task may ask for.", "limit", "cli", gt=0
    )
    qir_verify_max_qubits: int = _opt(
        20,
        'QIR conversion, verify: "auto": executes modules of up to this many qubits in '
        "qir-runner (0: never by default).",
        "limit",
        ge=0,
    )
    qir_verify_shots: int = _opt(
        1000, "qir-runner shots per module when the payload names none.", "limit", ge=100
    )
    qir_verify_time_s: float = _opt(
        30.0,
        'verify: "auto" takes fewer shots (never under 100), or skips, when the shots '
        "would take longer than this.",
        "limit",
        gt=0,
    )
    label_max_bytes: int = _opt(16_384, "A task's labels as JSON.", "limit", ge=2)
    label_max_depth: int = _opt(8, "Nesting of labels.", "limit", ge=1)
    label_max_keys: int = _opt(256, "Keys in a task's labels, all levels.", "limit", ge=0)
    max_active_tasks: int = _opt(
        25_000,
        "Pending + queued + running tasks one owner may have; more is answered 429 with "
        "Retry-After.",
        "limit",
        "traitlet",
        ge=1,
    )
    max_event_streams: int = _opt(
        16,
        "Open GET events requests (SSE or long poll) per owner; more is answered 429.",
        "limit",
        "traitlet",
        ge=1,
    )
    priority_max_tasks: int = _opt(
        8,
        "Fair share: a submission goes to its type's priority stream while its owner has "
        "at most this many active tasks (0 turns it off; docs/fair-share.md).",
        "limit",
        ge=0,
    )
    large_body_bytes: int = _opt(
        MiB, "A request body over this size is a large one.", "limit", ge=1
    )
    max_large_bodies: int = _opt(
        2, "Large bodies per owner being received or checked at once; 429 above.", "limit", ge=1
    )
    max_page_bytes: int = _opt(
        16 * MiB,
        "Payload + result bytes one GET tasks page may carry; 422 naming the limit that fits.",
        "limit",
        ge=1,
    )
    parse_workers: int = _opt(
        2,
        "Child processes that parse submitted circuits (0: parse in the server process).",
        "limit",
        ge=0,
    )
    parse_memory_bytes: int = _opt(
        2 * GiB,
        "Address space each parse child may add; a circuit needing more is refused (422).",
        "limit",
        ge=64 * MiB,
    )
    parse_time_s: float = _opt(
        60.0,
        "Deadline of one circuit parse in a child; a slower one is refused (422).",
        "limit",
        gt=0,
    )
    provider_options_max_keys: int = _opt(
        32, "Keys in a provider task's provider_options.", "limit", ge=0
    )
    provider_option_max_chars: int = _opt(
        1024, "Characters of a provider_options key or string value.", "limit", ge=1
    )
    max_task_memory_bytes: int = _opt(
        4 * GiB,
        "Memory one simulation task may use, estimated at submit (statevector 16 B x 2^n, "
        "density matrix 16 B x 4^n, matrix product state 16 B x chi^2 x (2n + 16); 422 "
        "above); Aer's max_memory_mb and the job processes' address-space limit.",
        "limit",
        ge=1,
    )
    mps_max_bond_dimension: int = _opt(
        512,
        "Aer's matrix_product_state_max_bond_dimension, which bounds its memory; past it "
        "Aer truncates (an approximate result).",
        "limit",
        ge=1,
    )
    max_stored_tasks: int = _opt(
        100_000,
        "Rows one owner may keep, finished ones included; 429 above (0: no cap).",
        "limit",
        ge=0,
    )
    retention_s: float = _opt(
        30 * 86_400.0,
        "Finished tasks older than this are deleted with their arrays by the workers' "
        "reconciler and qtaskdist gc (0: keep forever).",
        "limit",
        ge=0,
    )

    # ---- the server (QtaskdistApp) ----------------------------------------------------
    max_batch_bytes: int = _opt(
        64 * MiB,
        "Largest POST tasks/batch body; a larger Content-Length is refused (413) before "
        "the body is read.",
        "traitlet",
        ge=1,
    )
    worker_stale_s: float = _opt(
        60.0,
        "A worker whose heartbeat is older than this is reported dead (workers beat every "
        "visibility_timeout/3 = 20 s by default; 3 missed beats).",
        "traitlet",
        gt=0,
    )
    events_max_timeout_s: float = _opt(30.0, "Longest GET events long poll.", "traitlet", gt=0)
    metrics_cache_s: float = _opt(
        5.0, "GET metrics reads PostgreSQL and Redis at most this often.", "traitlet", ge=0
    )
    freeze_gc: bool = _opt(
        True,
        "After start-up, move the objects alive then (Jupyter's and qiskit's modules) out "
        "of the garbage collector's reach (gc.freeze): a full collection then skips them.",
        "traitlet",
    )

    # ---- the worker (qtaskdist-worker) ------------------------------------------------
    concurrency: int | None = _opt(
        None,
        "Job processes of the pool lane (simulation, conversion; default: one per usable "
        "core, at most 4).",
        "cli",
        env="QTASKDIST_WORKER_CONCURRENCY",
        gt=0,
    )
    name: str | None = _opt(
        None, "The worker's consumer name (default: host-pid).", "cli", env="QTASKDIST_WORKER_NAME"
    )
    batch_size: int = _opt(
        128,
        "XREADGROUP COUNT and largest Aer batch.",
        "cli",
        env="QTASKDIST_WORKER_BATCH_SIZE",
        gt=0,
    )
    visibility_timeout_s: float = _opt(
        60.0,
        "Idle time after which another worker takes an entry over.",
        "cli",
        env="QTASKDIST_WORKER_VISIBILITY_TIMEOUT_S",
        gt=0,
    )
    burst: bool = _opt(
        False,
        "Drain the queued tasks (and due retries), then exit 0.",
        "cli",
        env="QTASKDIST_WORKER_BURST",
    )
    grace_s: float = _opt(
        30.0,
        "On SIGTERM, time to finish tasks in flight before releasing them.",
        "cli",
        env="QTASKDIST_WORKER_GRACE_S",
        gt=0,
    )
    retry_base_s: float = _opt(
        1.0,
        "First retry delay; doubles per retry, jittered.",
        "cli",
        env="QTASKDIST_WORKER_RETRY_BASE_S",
        gt=0,
    )
    retry_cap_s: float = _opt(
        60.0, "Longest retry delay.", "cli", env="QTASKDIST_WORKER_RETRY_CAP_S", gt=0
    )
    reconcile_interval_s: float = _opt(
        15.0,
        "How often the reconciler releases the rows of dead workers.",
        "cli",
        env="QTASKDIST_WORKER_RECONCILE_INTERVAL_S",
        gt=0,
    )
    threads_per_job: int = _opt(
        1,
        "Aer/OpenMP threads per job process.",
        "cli",
        env="QTASKDIST_WORKER_THREADS_PER_JOB",
        gt=0,
    )
    backend_concurrency: int = _opt(
        32,
        "Provider tasks (the backend lane) polled at once.",
        "cli",
        env="QTASKDIST_WORKER_BACKEND_CONCURRENCY",
        gt=0,
    )
    poll_interval_s: float = _opt(
        1.0,
        "Longest pause between provider status polls.",
        "cli",
        env="QTASKDIST_WORKER_POLL_INTERVAL_S",
        gt=0,
    )
    job_memory_mb: int | None = _opt(
        None,
        "Address space a job process may add to its start-up size (default: "
        "max_task_memory_bytes + max_result_bytes + 512 MiB).",
        "cli",
        env="QTASKDIST_WORKER_JOB_MEMORY_MB",
        gt=0,
    )
    metrics_port: int | None = _opt(
        None,
        "Serve the worker's Prometheus metrics on this port (default: off).",
        "cli",
        env="QTASKDIST_WORKER_METRICS_PORT",
        gt=0,
    )
    metrics_addr: str = _opt(
        "127.0.0.1",
        "Address of the metrics port (127.0.0.1: this machine only; 0.0.0.0: all interfaces).",
        "cli",
        env="QTASKDIST_WORKER_METRICS_ADDR",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _opt(
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
