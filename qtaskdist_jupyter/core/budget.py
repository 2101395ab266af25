"""A simulate task's memory, estimated before it runs: the budget per task.

Pure functions, used by the API at submit (a 422 before any row exists) and by the job
process before it calls Aer (the worker's limits may be below the server's). The
estimate is the simulator's state, which is what grows with the qubits:

=========================  ==================================================================
method                     estimate
=========================  ==================================================================
``statevector``            16 B × 2^n (complex128 amplitudes)
``density_matrix``         16 B × 4^n
``stabilizer``             16 B × n² (a tableau of 2n × 2n bits, rounded up generously)
``matrix_product_state``   16 B × n (one bond of dimension 1 per qubit). Its true size
                           depends on the entanglement and is not known before the run;
                           the job process's address-space limit bounds it then
``automatic``              what Aer's automatic choice would pick: ``stabilizer`` for a
                           Clifford circuit (every operation in :data:`CLIFFORD_OPS`, no
                           saved statevector), ``density_matrix`` for a noisy circuit
                           with more shots than 2^n whose density matrix fits the
                           budget, else ``statevector``. Aer would also try
                           ``matrix_product_state`` when a statevector does not fit; the
                           estimate does not count on that (name the method to use it)
=========================  ==================================================================

The result arrays (statevector, probabilities, memory, counts) are counted apart, against
``QTASKDIST_MAX_RESULT_BYTES`` (:mod:`qtaskdist_jupyter.core.arrays`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from qtaskdist_jupyter.core.arrays import check_result_size
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import LimitExceeded


class CircuitShape(Protocol):
    """What the budget reads of a checked circuit (circuits.codec.CircuitInfo has it):
    the budget is domain logic and imports no codec."""

    @property
    def num_qubits(self) -> int: ...

    @property
    def num_clbits(self) -> int: ...

    @property
    def operations(self) -> Collection[str]: ...


AMPLITUDE_BYTES = 16
# Gates Aer's stabilizer method runs (qiskit_aer's BASIS_GATES["stabilizer"] less ``rz``,
# which it takes only at multiples of pi/2) and the operations every method runs.
CLIFFORD_OPS = frozenset(
    "cx cy cz ecr h id pauli s sdg swap sx sxdg x y z measure reset barrier delay store".split()
)
MIB = 1024 * 1024
# backend_run's offline device: Aer in the worker's own process (qtaskdist_worker.local_device).
LOCAL_DEVICE_ID = "local"


def state_bytes(method: str, num_qubits: int) -> int:
    """Bytes of the simulator's state for ``num_qubits`` under a concrete ``method``."""
    n = num_qubits
    if method == "density_matrix":
        return AMPLITUDE_BYTES << (2 * n)
    if method == "stabilizer":
        return AMPLITUDE_BYTES * n * n
    if method == "matrix_product_state":
        return AMPLITUDE_BYTES * n
    return AMPLITUDE_BYTES << n  # statevector, and anything unknown: the dense state


def resolve_method(
    payload: dict[str, Any], num_qubits: int, operations: Collection[str], budget_bytes: int
) -> str:
    """The method a simulate payload runs with (Aer's choice for ``automatic``)."""
    method = str(payload.get("method") or "automatic")
    if method != "automatic":
        return method
    if operations and set(operations) <= CLIFFORD_OPS and not payload.get("statevector"):
        return "stabilizer"
    noise = payload.get("noise") or {}
    noisy = bool(noise.get("depolarizing_1q") or noise.get("depolarizing_2q"))
    shots = int(payload.get("shots", 1024))
    if noisy and num_qubits < 64 and shots > (1 << num_qubits):
        if state_bytes("density_matrix", num_qubits) <= budget_bytes:
            return "density_matrix"
    return "statevector"


def task_memory(
    payload: dict[str, Any], num_qubits: int, operations: Collection[str], budget_bytes: int
) -> tuple[str, int]:
    """(method, estimated bytes) of one simulate task."""
    method = resolve_method(payload, num_qubits, operations, budget_bytes)
    return method, state_bytes(method, num_qubits)


def check_submit(
    task_type: str, payload: dict[str, Any], info: CircuitShape, limits: Limits
) -> None:
    """The resource checks of a submit: a simulate task's memory and result size; a
    backend_run's counts, and its memory on the local device (where Aer runs too)."""
    n, ops, budget = info.num_qubits, info.operations, limits.max_task_memory_bytes
    if task_type == "simulate":
        check_task_memory(payload, n, ops, budget)
    elif task_type == "backend_run" and payload.get("device_id") == LOCAL_DEVICE_ID:
        method = (payload.get("provider_options") or {}).get("method") or "automatic"
        local = {"method": method, "shots": payload.get("shots", 1024)}
        check_task_memory(local, n, ops, budget, field="payload.provider_options.method")
    if task_type in ("simulate", "backend_run"):
        check_result_size(payload, n, info.num_clbits, limits.max_result_bytes)


def check_task_memory(
    payload: dict[str, Any],
    num_qubits: int,
    operations: Collection[str],
    budget_bytes: int,
    *,
    field: str = "payload.method",
) -> int:
    """The estimate, or LimitExceeded (422 ``limit_exceeded``) naming the field and limit."""
    method, need = task_memory(payload, num_qubits, operations, budget_bytes)
    if need <= budget_bytes:
        return need
    hint = "" if method == "matrix_product_state" else "; method 'matrix_product_state' may fit"
    raise LimitExceeded(
        f"{field}: a {num_qubits}-qubit {method} simulation needs "
        f"{_human(need)}; QTASKDIST_MAX_TASK_MEMORY_BYTES is {_human(budget_bytes)}{hint}",
        limit="max_task_memory_bytes",
        value=need,
        maximum=budget_bytes,
        field=field,
    )


def aer_max_memory_mb(budget_bytes: int) -> int:
    """Aer's ``max_memory_mb`` for a task of this budget (at least 1)."""
    return max(1, budget_bytes // MIB)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover
