"""Circuits → task payloads: a QuantumCircuit travels as base64 QPY, text as it is."""

from __future__ import annotations

from typing import Any

from qtaskdist_jupyter.core.errors import InvalidInput


def encode(circuit: Any) -> tuple[str, str]:
    """A QuantumCircuit → base64 QPY; text → as is (OpenQASM 2/3, format detected)."""
    if isinstance(circuit, str):
        return circuit, "auto"
    if isinstance(circuit, bytes):
        return circuit.decode(), "auto"
    from qtaskdist_jupyter.core.circuits import codec  # imports qiskit: only for a circuit object

    return codec.encode_circuit(circuit)


def task_payloads(circuits: Any, opts: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    clean = {k: v for k, v in opts.items() if v is not None}

    def one(c: Any) -> dict[str, Any]:
        text, fmt = encode(c)
        return {"circuit": text, "circuit_format": fmt, **clean}

    if isinstance(circuits, (list, tuple)):
        return [one(c) for c in circuits]
    return one(circuits)


def sweep_payloads(circuits: Any, opts: dict[str, Any], chunk: int) -> list[dict[str, Any]]:
    """One circuit's ``parameter_bindings`` split over tasks of at most ``chunk`` each (a
    sweep): their payloads, in binding order."""
    if chunk < 1:
        raise InvalidInput(f"chunk must be at least 1, not {chunk}", field="chunk")
    if isinstance(circuits, (list, tuple)):
        raise InvalidInput("chunk splits one circuit's bindings: pass one circuit", field="chunk")
    bindings = opts.get("parameter_bindings") or []
    if not bindings:
        raise InvalidInput("chunk splits parameter_bindings: none given", field="chunk")
    one = task_payloads(circuits, {**opts, "parameter_bindings": None})
    assert isinstance(one, dict)
    return [
        {**one, "parameter_bindings": bindings[i : i + chunk]}
        for i in range(0, len(bindings), chunk)
    ]
