"""Every error qtaskdist raises, in one tree.

::

    QtaskdistError
    ├── ConfigError                    bad DATABASE_URL / REDIS_URL / limits (startup)
    ├── InvalidInput                   the caller sent something we refuse        -> HTTP 422
    │   ├── BadJson                    a body that is not strict JSON             -> 400
    │   ├── CircuitError               QASM / QPY that does not parse (line, column)
    │   │   └── IncludeRefused         include other than qelib1.inc / stdgates.inc
    │   ├── LimitExceeded              qubits, instructions, shots, batch size   -> 422
    │   │   ├── PayloadTooLarge        body / payload bytes over the limit       -> 413
    │   │   └── ResultTooLarge         result over QTASKDIST_MAX_RESULT_BYTES    -> 422
    │   ├── UnknownTaskType            task_type not in STREAMS                  -> 422
    │   ├── AmbiguousId                an id's start that starts several ids     -> 422
    │   ├── MalformedMessage           a stream message that does not decode (worker)
    │   └── DataRefused                PostgreSQL refused a statement's data (size,
    │                                  encoding, constraint): not an outage     -> 422
    ├── QuotaExceeded                  a per-user limit (active tasks, streams)   -> 429
    ├── OperatorOnly                   an operator's view asked for by a user     -> 403
    ├── OwnerNamed                     a request names an owner (who asks is it)  -> 403
    ├── TaskNotFound                   missing, or owned by someone else         -> 404
    │   └── ArrayNotFound              no stored result array of that name       -> 404
    ├── TransitionError                guarded UPDATE matched no row             -> 409
    ├── ServiceUnavailable             a backing service cannot be reached       -> 503
    │   ├── DatabaseUnavailable
    │   ├── QueueUnavailable
    │   └── AuthUnavailable        the hub that resolves tokens can't be asked
    ├── JobError                       raised while a worker runs a task
    │   ├── PermanentJobError          fail now, never retry
    │   │   ├── ProfileViolation       the circuit needs more than its QIR profile
    │   │   ├── QirModuleInvalid       the produced QIR module is wrong (converter bug)
    │   │   └── MemoryExceeded         the task ran out of its job process's memory
    │   ├── RetryableJobError          back to queued with backoff
    │   ├── JobTimeout                 ran past its time limit (permanent)
    │   ├── JobCancelled               its child process was killed: task cancelled
    │   └── ChildDied                  its child process died unanswered (retryable)
    └── ClientError                    notebook side
        ├── ServerNotFound             no jupyter server with the extension found
        ├── ApiError                   the REST API answered with an error
        ├── TaskFailed                 result() of a failed / cancelled task
        └── WaitTimeout                wait()/result() ran past timeout_s

Lower libraries' errors are mapped onto this tree with ``raise ... from exc`` so the
original stays on ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qtaskdist_jupyter.core.jsontypes import JsonObject


class QtaskdistError(Exception):
    """Base class; ``detail`` is a short machine-readable dict for JSON responses."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = {k: v for k, v in detail.items() if v is not None}

    def to_json(self) -> JsonObject:
        return {"error": self.code, "detail": self.message, **self.detail}


class ConfigError(QtaskdistError):
    code = "config_error"


class InvalidInput(QtaskdistError):
    http_status = 422
    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, **detail: Any) -> None:
        super().__init__(message, field=field, **detail)
        self.field = field


class CircuitError(InvalidInput):
    code = "invalid_circuit"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = "circuit",
        line: int | None = None,
        column: int | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(message, field=field, line=line, column=column, **detail)
        self.line = line
        self.column = column


class IncludeRefused(CircuitError):
    code = "include_refused"


class LimitExceeded(InvalidInput):
    code = "limit_exceeded"

    def __init__(
        self, message: str, *, limit: str, value: Any = None, maximum: Any = None, **kw: Any
    ) -> None:
        super().__init__(message, limit=limit, value=value, maximum=maximum, **kw)
        self.limit = limit


class PayloadTooLarge(LimitExceeded):
    http_status = 413
    code = "payload_too_large"


class UnknownTaskType(InvalidInput):
    code = "unknown_task_type"


class AmbiguousId(InvalidInput):
    """The start of an id (core/short_ids.py) that starts more than one of the asker's
    task and batch ids; ``matches`` says how many (counted up to a cap)."""

    code = "ambiguous_id"


class MalformedMessage(InvalidInput):
    """A stream message whose fields do not decode into a task message."""

    code = "malformed_message"


class DataRefused(InvalidInput):
    """PostgreSQL refused a statement for its data (SQLSTATE class 22, 23 or 54): sending
    the same data again fails the same way, so nobody retries it."""

    code = "data_refused"


class ResultTooLarge(LimitExceeded):
    """A task's result would exceed QTASKDIST_MAX_RESULT_BYTES."""

    code = "result_too_large"


class BadJson(InvalidInput):
    http_status = 400
    code = "bad_json"


class QuotaExceeded(QtaskdistError):
    """A per-owner limit; ``retry_after_s`` goes out as the Retry-After header. Like every
    refusal over a limit it names the ``field`` (what the limit counts) and the ``limit``."""

    http_status = 429
    code = "quota_exceeded"

    def __init__(
        self, message: str, *, field: str, limit: str, retry_after_s: int, **detail: Any
    ) -> None:
        super().__init__(message, field=field, limit=limit, retry_after_s=retry_after_s, **detail)
        self.retry_after_s = retry_after_s


class OperatorOnly(QtaskdistError):
    """A fleet-wide view (GET metrics) for a user who is not an operator."""

    http_status = 403
    code = "operator_only"


class OwnerNamed(QtaskdistError):
    """A request that names an owner: the owner is always who asks, never a field."""

    http_status = 403
    code = "owner_not_yours_to_name"


class TaskNotFound(QtaskdistError):
    http_status = 404
    code = "task_not_found"


class ArrayNotFound(TaskNotFound):
    """The task exists but its result stores no array of that name."""

    code = "task_array_not_found"


class TransitionError(QtaskdistError):
    http_status = 409
    code = "illegal_transition"


class ServiceUnavailable(QtaskdistError):
    http_status = 503
    code = "service_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class QueueUnavailable(ServiceUnavailable):
    code = "queue_unavailable"


class AuthUnavailable(ServiceUnavailable):
    """The shared service can't resolve a token: JupyterHub's API does not answer."""

    code = "auth_unavailable"


class JobError(QtaskdistError):
    code = "job_error"
    retryable = False
    # Which unit of a worker's request did not answer (qtaskdist_worker.executor.at_unit).
    unit: int = 0
    # meta_data the failed task keeps beside the error (the QIR check's figures).
    meta: Mapping[str, object] | None = None


class PermanentJobError(JobError):
    code = "permanent_job_error"


class ProfileViolation(PermanentJobError):
    """c_qir_convert: the circuit needs more than the requested QIR profile allows."""

    code = "qir_profile_violation"


class QirModuleInvalid(PermanentJobError):
    """c_qir_convert: the produced module breaks its profile or does not compute what the
    circuit does (a converter bug); the module is not returned."""

    code = "qir_module_invalid"


class MemoryExceeded(PermanentJobError):
    """The task needed more memory than its budget or its job process's limit: the same
    input fails the same way, so it is not retried (worker/qtaskdist_worker/memlimit.py)."""

    code = "memory_exceeded"


class RetryableJobError(JobError):
    code = "retryable_job_error"
    retryable = True


class JobTimeout(JobError):
    code = "job_timeout"


class JobCancelled(JobError):
    """The job's child was killed because its task was cancelled."""


class ChildDied(JobError):
    """The child exited without answering (crash, OOM kill): worth one more try."""

    retryable = True


class ClientError(QtaskdistError):
    code = "client_error"


class ServerNotFound(ClientError):
    code = "server_not_found"


class ApiError(ClientError):
    code = "api_error"

    def __init__(self, message: str, *, status: int, error: str | None = None, **detail: Any):
        super().__init__(message, status=status, error=error, **detail)
        self.status = status
        self.error = error


class TaskFailed(ClientError):
    code = "task_failed"


class WaitTimeout(ClientError):
    code = "wait_timeout"
