"""Request / response models (pydantic v2) and one payload model per task_type.

Payload models validate structure and numbers; the circuit text itself is checked by
:mod:`qtaskdist_jupyter.core.circuits.codec`. Limits come from ``Settings.limits`` through the
validation context (``context={"limits": limits}``), so they stay configurable.

A JSON document in a request or an answer that no model here shapes (a payload before its
kind's model reads it, labels, a result) is a ``dict[str, object]`` field: pydantic checks
that it is an object and leaves its values as they are (no walk of a large result), and a
reader narrows a value before using it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qtaskdist_jupyter.core import strictjson
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import InvalidInput, UnknownTaskType
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject, JsonScalar
from qtaskdist_jupyter.core.kinds import by_kind, load
from qtaskdist_jupyter.core.schema_errors import OverLimit, validation_error
from qtaskdist_jupyter.core.status import TaskStatus

SEED_MAX = 2**63 - 1
# Where a task's user labels live inside its meta_data column: every other key of
# meta_data is the system's, and only the system's keys are ever read by a worker.
USER_META_KEY = "user"
CircuitFormat = Literal["auto", "qasm2", "qasm3", "qpy"]
SimMethod = Literal[
    "automatic", "statevector", "density_matrix", "matrix_product_state", "stabilizer"
]
Number = StrictInt | StrictFloat
_PAULI = re.compile(r"^[IXYZ]+$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_\[\]]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


def _limits(info: ValidationInfo) -> Limits:
    ctx = info.context or {}
    return ctx.get("limits") or Limits()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _CircuitPayload(_Strict):
    circuit: str = Field(min_length=1, description="OpenQASM 2/3 text or base64 QPY")
    circuit_format: CircuitFormat = "auto"
    time_limit_s: Number | None = Field(default=None, gt=0)

    @field_validator("circuit")
    @classmethod
    def _size(cls, v: str, info: ValidationInfo) -> str:
        limit = _limits(info).max_payload_bytes
        if len(v.encode()) > limit:
            # Raised as our own error so the handler answers 413, not 422.
            from qtaskdist_jupyter.core.errors import PayloadTooLarge

            raise PayloadTooLarge(
                f"circuit is {len(v.encode())} bytes; the limit is {limit}",
                limit="payload_bytes",
                value=len(v.encode()),
                maximum=limit,
                field="payload.circuit",
            )
        return v

    @field_validator("time_limit_s")
    @classmethod
    def _time(cls, v: float | None, info: ValidationInfo) -> float | None:
        cap = _limits(info).max_time_limit_s
        if v is not None and v > cap:
            msg = f"time_limit_s={v} is over the cap of {cap} s"
            raise OverLimit(msg, limit="max_time_limit_s", maximum=cap, value=v)
        return v


def _check_shots(v: int, info: ValidationInfo) -> int:
    cap = _limits(info).max_shots
    if v > cap:
        msg = f"shots={v} is over the limit of {cap}"
        raise OverLimit(msg, limit="shots", maximum=cap, value=v)
    return v


class NoiseSpec(_Strict):
    """A simple noise model: depolarizing errors on 1- and 2-qubit gates, readout flips."""

    depolarizing_1q: Number = Field(default=0.0, ge=0, le=1)
    depolarizing_2q: Number = Field(default=0.0, ge=0, le=1)
    readout: Number = Field(default=0.0, ge=0, le=1)


Observable = Annotated[str, Field(min_length=1, max_length=64)] | dict[str, Number]


class SimulatePayload(_CircuitPayload):
    shots: StrictInt = Field(default=1024, ge=1)
    seed: StrictInt | None = Field(default=None, ge=0, le=SEED_MAX)
    method: SimMethod = "automatic"
    device: Literal["CPU", "GPU"] = "CPU"
    noise: NoiseSpec | None = None
    memory: StrictBool = False
    statevector: StrictBool = False
    probabilities: StrictBool = False
    observables: list[Observable] | None = Field(default=None, max_length=256)
    parameter_bindings: list[dict[str, Number]] | None = Field(default=None, max_length=10_000)

    _shots = field_validator("shots")(_check_shots)

    @field_validator("observables")
    @classmethod
    def _paulis(cls, v: list[Any] | None) -> list[Any] | None:
        for obs in v or []:
            labels = [obs] if isinstance(obs, str) else list(obs)
            if not labels:
                raise ValueError("an observable sum needs at least one Pauli term")
            for label in labels:
                if not _PAULI.match(label):
                    raise ValueError(f"observable {label!r} is not a Pauli string over I, X, Y, Z")
        return v

    @field_validator("parameter_bindings")
    @classmethod
    def _names(cls, v: list[dict[str, float]] | None) -> list[dict[str, float]] | None:
        for binding in v or []:
            for name in binding:
                if not _PARAM.match(name):
                    raise ValueError(f"parameter name {name!r} is not an identifier")
        return v


class ConvertPayload(_CircuitPayload):
    """c_qir_convert; the fields are documented in docs/message-format.md."""

    profile: Literal["base", "adaptive"] = "base"
    module_name: str = Field(default="main", pattern=_MODULE.pattern)
    # One object: one module; a list: one module per binding, in one task.
    parameter_bindings: dict[str, Number] | list[dict[str, Number]] | None = Field(
        default=None, union_mode="left_to_right"
    )
    verify: Literal["auto", "execute", "static"] = "auto"
    verify_shots: StrictInt | None = Field(default=None, ge=100, le=100_000)
    verify_seed: StrictInt | None = Field(default=None, ge=0, le=SEED_MAX)

    @field_validator("parameter_bindings")
    @classmethod
    def _bindings(cls, v: Any) -> Any:
        bindings = [v] if isinstance(v, dict) else (v or [])
        if isinstance(v, list) and not 1 <= len(v) <= 1000:
            msg = "give between 1 and 1000 bindings (one module each)"
            raise OverLimit(msg, limit="bindings", maximum=1000, value=len(v))
        for binding in bindings:
            for name in binding:
                if not _PARAM.match(name):
                    raise ValueError(f"parameter name {name!r} is not an identifier")
        return v

    @field_validator("verify_shots")
    @classmethod
    def _verify_shots(cls, v: int | None, info: ValidationInfo) -> int | None:
        return v if v is None else _check_shots(v, info)


class BackendPayload(_CircuitPayload):
    device_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    shots: StrictInt = Field(default=1024, ge=1)
    # Flat (depth 1: scalar values only), bounded in keys and characters.
    provider_options: dict[str, StrictInt | StrictFloat | StrictBool | str | None] = Field(
        default_factory=dict
    )

    _shots = field_validator("shots")(_check_shots)

    @field_validator("provider_options")
    @classmethod
    def _options(cls, v: dict[str, JsonScalar], info: ValidationInfo) -> dict[str, JsonScalar]:
        limits = _limits(info)
        if len(v) > limits.provider_options_max_keys:
            top_keys = limits.provider_options_max_keys
            msg = f"{len(v)} keys; the limit is {top_keys}"
            raise OverLimit(msg, limit="provider_options_max_keys", maximum=top_keys, value=len(v))
        top = limits.provider_option_max_chars
        for key, value in v.items():
            for what, text in (("key", key), ("value of", value)):
                if isinstance(text, str) and len(text) > top:
                    name = key[:20] + ("..." if len(key) > 20 else "")
                    msg = f"{what} {name!r} has {len(text)} characters; the limit is {top}"
                    raise OverLimit(msg, limit="provider_option_max_chars", maximum=top)
        return v


# task type -> its payload model, named by the type's spec (core/kinds.py).
PAYLOAD_MODELS: Mapping[str, type[_CircuitPayload]] = by_kind(lambda k: load(k.payload_model))


def validate_payload(task_type: str, payload: Any, limits: Limits) -> JsonObject:
    """Validate ``payload`` for ``task_type``; return the normalized JSON dict."""
    model = PAYLOAD_MODELS.get(task_type)
    if model is None:
        raise UnknownTaskType(
            f"unknown task_type {task_type!r}; expected one of {sorted(PAYLOAD_MODELS)}",
            field="task_type",
        )
    try:
        parsed = model.model_validate(payload, context={"limits": limits})
    except ValidationError as exc:
        raise validation_error(exc, "payload") from exc
    return parsed.model_dump(mode="json", exclude_none=True)


def parse_payload(task_type: str, payload: JsonMap) -> _CircuitPayload:
    """Worker side: the stored payload back into its model (already validated once)."""
    return PAYLOAD_MODELS[task_type].model_validate(payload, context={"limits": Limits()})


# meta_data keys the system writes (provider job records, profiling, retry history,
# seeds, errors). A request naming one is refused, so nobody believes they set it.
SYSTEM_META_KEYS = frozenset(
    "provider_job_id provider_job device_id attempts traceback error_id error_type queue_wait_s "
    "run_time_s simulator_time_s worker host qiskit_version aer_version batched_with "
    "seed_simulator seed seeds method released_by dead_worker retry_delay_s profiling".split()
) | {USER_META_KEY}
_LABEL_KEY_CHARS = 128
Text = Annotated[str, Field(max_length=255)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]


def check_labels(value: dict[str, object], field: str, limits: Limits) -> dict[str, object]:
    """Free user data, bounded: depth, keys, key length and encoded size."""
    keys = strictjson.check(value, max_depth=limits.label_max_depth, where=field)
    if keys > limits.label_max_keys:
        top = limits.label_max_keys
        raise OverLimit(f"{keys} keys; the limit is {top}", limit="label_max_keys", maximum=top)
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k in v:
                if len(k) > _LABEL_KEY_CHARS:
                    msg = f"key {k[:20]!r}… is over {_LABEL_KEY_CHARS} characters"
                    raise OverLimit(msg, limit="label_key_chars", maximum=_LABEL_KEY_CHARS)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    size = len(strictjson.dumps(value).encode())
    if size > limits.label_max_bytes:
        top = limits.label_max_bytes
        msg = f"{size} bytes as JSON; the limit is {top}"
        raise OverLimit(msg, limit="label_max_bytes", maximum=top, value=size)
    return value


def _user_meta(v: dict[str, object] | None, info: ValidationInfo) -> dict[str, object] | None:
    if v is None:
        return v
    if info.field_name == "meta_data":
        for key in v:
            if key in SYSTEM_META_KEYS:
                raise InvalidInput(
                    f"meta_data.{key} is written by the system and cannot be set; "
                    "put your own data in labels",
                    field=f"meta_data.{key}",
                )
    return check_labels(v, str(info.field_name), _limits(info))


class _UserFields(_Strict):
    """What a user may write besides the payload. ``labels`` is theirs, free and bounded;
    ``meta_data`` is its older spelling (the same namespace), minus the system's keys."""

    @field_validator("labels", "meta_data", check_fields=False)
    @classmethod
    def _labels(cls, v: dict[str, object] | None, info: ValidationInfo) -> dict[str, object] | None:
        return _user_meta(v, info)

    def user_labels(self) -> JsonObject | None:
        """The user's labels: JSON from the request body (strictjson), bounded by
        check_labels, the fields' validator."""
        labels, meta = getattr(self, "labels", None), getattr(self, "meta_data", None)
        if labels is not None and meta is not None:
            raise InvalidInput("give labels or meta_data, not both", field="meta_data")
        return cast("JsonObject | None", labels if labels is not None else meta)


class TaskCreate(_UserFields):
    task_type: str
    # Read by its task_type's payload model (validate_payload).
    payload: dict[str, object]
    name: Text | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    max_retries: StrictInt = Field(default=3, ge=0, le=20)
    batch_id: uuid.UUID | None = None
    labels: dict[str, object] | None = None
    meta_data: dict[str, object] | None = None
    enqueue: StrictBool = False


class BatchCreate(_Strict):
    tasks: list[TaskCreate] = Field(min_length=1)
    enqueue: StrictBool = True
    batch_id: uuid.UUID | None = None


class TaskUpdate(_UserFields):
    """PATCH body. ``status`` may only move along the user transitions
    (cancel: pending|queued|running → cancelled; retry: failed|cancelled → queued).
    ``labels`` (or ``meta_data``) replaces the user's labels; the system's keys stay."""

    status: TaskStatus | None = None
    name: Text | None = None
    tags: list[Tag] | None = Field(default=None, max_length=32)
    max_retries: StrictInt | None = Field(default=None, ge=0, le=20)
    labels: dict[str, object] | None = None
    meta_data: dict[str, object] | None = None


class AttemptInfo(BaseModel):
    attempt: int
    worker: str | None = None
    claimed_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None


class ProfilingInfo(BaseModel):
    queue_wait_s: float | None = None
    run_time_s: float | None = None
    simulator_time_s: float | None = None
    worker: str | None = None
    host: str | None = None
    qiskit_version: str | None = None
    aer_version: str | None = None
    batched_with: int | None = None
    attempts: list[AttemptInfo] = Field(default_factory=list)


class TaskRead(BaseModel):
    """A task as the API answers it (read from its row, dumped as JSON): its payload,
    result, meta_data and labels go out as stored."""

    model_config = ConfigDict(from_attributes=True)

    task_id: uuid.UUID
    task_type: str
    status: TaskStatus
    payload: dict[str, object]
    result: dict[str, object] | None = None
    error: str | None = None
    retry_count: int
    max_retries: int
    created_at: datetime
    updated_at: datetime
    scheduled_for: datetime | None = None
    meta_data: dict[str, object] = Field(default_factory=dict)
    labels: dict[str, object] = Field(default_factory=dict)
    owner: str
    attempt: int
    batch_id: uuid.UUID | None = None
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    # queued_at: when its current wait began; claimed_at: a worker took it (the attempt
    # began); started_at: its job began to run (None while it waits behind others).
    queued_at: datetime | None = None
    claimed_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_meta(cls, row: Any) -> Any:
        """Stored as ``meta_data.user``; answered as ``labels`` beside the system's keys."""
        if isinstance(row, dict) and isinstance(row.get("meta_data"), dict):
            meta = dict(row["meta_data"])
            user = meta.pop(USER_META_KEY, None)
            row = {**row, "meta_data": meta, "labels": user if isinstance(user, dict) else {}}
        return row
