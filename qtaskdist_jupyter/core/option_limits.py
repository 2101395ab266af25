"""The limits: the fields of the settings model (:mod:`.options`) that are also fields of
:class:`~qtaskdist_jupyter.core.config.Limits`, and ``opt``, which declares every field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from qtaskdist_jupyter.core.jsontypes import JsonObject

ENV_PREFIX = "QTASKDIST_"
MiB = 1024 * 1024
GiB = 1024 * MiB


def opt(default: Any, help: str, *surfaces: str, env: str | None = None, **bounds: Any) -> Any:
    """A field: its default, help, the surfaces besides the environment it appears on
    (``"limit"``: a field of ``Limits``; ``"traitlet"``; ``"cli"``; ``"service"``), a variable
    other than ``QTASKDIST_<NAME>``, and bounds (``ge``, ``gt``)."""
    extra: JsonObject = {"surfaces": list(surfaces)}
    return Field(default, description=help, validation_alias=env, json_schema_extra=extra, **bounds)


class LimitOptions(BaseModel):
    """The options tagged ``limit``: checked at submit (or by the worker), overridable per
    server with ``QtaskdistApp.limits``."""

    max_payload_bytes: int = opt(
        1_000_000, "Largest circuit/payload accepted (413 above).", "limit", ge=1
    )
    max_qubits: int = opt(
        30, "Most qubits of a circuit and of every circuit nested in it.", "limit", ge=1
    )
    max_instructions: int = opt(
        200_000,
        "Most instructions of a circuit, after expanding user gate definitions and "
        "unrolling for loops.",
        "limit",
        ge=1,
    )
    max_shots: int = opt(1_000_000, "Most shots of a task.", "limit", ge=1)
    max_batch_tasks: int = opt(20_000, "Tasks in one batch request.", "limit", ge=1)
    max_result_bytes: int = opt(
        512 * MiB,
        "Largest result a task may produce: its arrays uncompressed (statevector "
        "16 B x 2^n) and its counts as JSON (bounded at submit by min(shots, 2^clbits) "
        "keys); refused at submit (422) when the bound passes it, else the task fails.",
        "limit",
        ge=1,
    )
    time_limit_s: float = opt(300.0, "Default execution limit per task.", "limit", gt=0)
    max_time_limit_s: float = opt(
        3600.0, "Cap on the time limit a task may ask for.", "limit", "cli", gt=0
    )
    qir_verify_max_qubits: int = opt(
        20,
        'QIR conversion, verify: "auto": executes modules of up to this many qubits in '
        "qir-runner (0: never by default).",
        "limit",
        ge=0,
    )
    qir_verify_shots: int = opt(
        1000, "qir-runner shots per module when the payload names none.", "limit", ge=100
    )
    qir_verify_time_s: float = opt(
        30.0,
        'verify: "auto" takes fewer shots (never under 100), or skips, when the shots '
        "would take longer than this.",
        "limit",
        gt=0,
    )
    label_max_bytes: int = opt(16_384, "A task's labels as JSON.", "limit", ge=2)
    label_max_depth: int = opt(8, "Nesting of labels.", "limit", ge=1)
    label_max_keys: int = opt(256, "Keys in a task's labels, all levels.", "limit", ge=0)
    max_active_tasks: int = opt(
        25_000,
        "Pending + queued + running tasks one owner may have; more is answered 429 with "
        "Retry-After.",
        "limit",
        "traitlet",
        ge=1,
    )
    max_event_streams: int = opt(
        16,
        "Open GET events requests (SSE or long poll) per owner; more is answered 429.",
        "limit",
        "traitlet",
        ge=1,
    )
    priority_max_tasks: int = opt(
        8,
        "Fair share: a submission goes to its type's priority stream while its owner has "
        "at most this many active tasks (0 turns it off; docs/fair-share.md).",
        "limit",
        ge=0,
    )
    large_body_bytes: int = opt(MiB, "A request body over this size is a large one.", "limit", ge=1)
    max_large_bodies: int = opt(
        2, "Large bodies per owner being received or checked at once; 429 above.", "limit", ge=1
    )
    max_page_bytes: int = opt(
        16 * MiB,
        "Payload + result bytes one GET tasks page may carry; 422 naming the limit that fits.",
        "limit",
        ge=1,
    )
    parse_workers: int = opt(
        2,
        "Child processes that parse submitted circuits (0: parse in the server process).",
        "limit",
        ge=0,
    )
    parse_memory_bytes: int = opt(
        2 * GiB,
        "Address space each parse child may add; a circuit needing more is refused (422).",
        "limit",
        ge=64 * MiB,
    )
    parse_time_s: float = opt(
        60.0,
        "Deadline of one circuit parse in a child; a slower one is refused (422).",
        "limit",
        gt=0,
    )
    provider_options_max_keys: int = opt(
        32, "Keys in a provider task's provider_options.", "limit", ge=0
    )
    provider_option_max_chars: int = opt(
        1024, "Characters of a provider_options key or string value.", "limit", ge=1
    )
    max_task_memory_bytes: int = opt(
        4 * GiB,
        "Memory one simulation task may use, estimated at submit (statevector 16 B x 2^n, "
        "density matrix 16 B x 4^n, matrix product state 16 B x chi^2 x (2n + 16); 422 "
        "above); Aer's max_memory_mb and the job processes' address-space limit.",
        "limit",
        ge=1,
    )
    mps_max_bond_dimension: int = opt(
        512,
        "Aer's matrix_product_state_max_bond_dimension, which bounds its memory; past it "
        "Aer truncates (an approximate result).",
        "limit",
        ge=1,
    )
    max_stored_tasks: int = opt(
        100_000,
        "Rows one owner may keep, finished ones included; 429 above (0: no cap).",
        "limit",
        ge=0,
    )
    retention_s: float = opt(
        30 * 86_400.0,
        "Finished tasks older than this are deleted with their arrays by the workers' "
        "reconciler and qtaskdist gc (0: keep forever).",
        "limit",
        ge=0,
    )
