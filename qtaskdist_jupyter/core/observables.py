"""A simulate task's observables against its circuit, checked at submit (issue 26, point 10):
a Pauli string must have one factor per qubit, or the task fails later on the worker."""

from __future__ import annotations

from typing import Any

from qtaskdist_jupyter.core.errors import InvalidInput


def observable_mismatch(observables: list[Any] | None, num_qubits: int) -> tuple[int, str] | None:
    """(index, label) of the first Pauli string whose length is not ``num_qubits``, else
    None. An observable is a Pauli string or a sum ``{label: coefficient}``."""
    for k, obs in enumerate(observables or []):
        labels = [obs] if isinstance(obs, str) else list(obs)
        for label in labels:
            if len(label) != num_qubits:
                return k, label
    return None


def check_observables(observables: list[Any] | None, num_qubits: int) -> None:
    """InvalidInput (422 ``invalid_input``, naming the observable) on a length mismatch."""
    found = observable_mismatch(observables, num_qubits)
    if found is None:
        return
    k, label = found
    raise InvalidInput(
        f"payload.observables[{k}]: {label!r} has {len(label)} Pauli factors but the "
        f"circuit has {num_qubits} qubits (one factor per qubit; the rightmost acts on "
        "qubit 0)",
        field=f"payload.observables[{k}]",
    )
