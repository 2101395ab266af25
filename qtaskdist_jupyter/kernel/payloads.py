"""Circuits → task payloads (a QuantumCircuit travels as base64 QPY, text as it is), and the
task specs ``POST tasks`` and ``POST tasks/batch`` take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject, JsonValue


class TaskSpec(TypedDict, total=False):
    """One task to create (core.schemas.TaskCreate): its type and payload, and what the
    user named; ``enqueue`` False parks it pending."""

    task_type: str
    payload: JsonObject
    enqueue: bool
    name: str
    tags: list[str]
    max_retries: int
    labels: JsonObject
    meta_data: JsonObject


def task_spec(
    task_type: str,
    payload: JsonObject,
    *,
    enqueue: bool,
    name: str | None = None,
    tags: Sequence[str] | None = None,
    max_retries: int | None = None,
    labels: JsonObject | None = None,
    meta_data: JsonObject | None = None,
) -> TaskSpec:
    """The spec of one task; what is not given stays out."""
    spec = TaskSpec(task_type=task_type, payload=payload, enqueue=enqueue)
    if name is not None:
        spec["name"] = name
    if tags:
        spec["tags"] = list(tags)
    if max_retries is not None:
        spec["max_retries"] = max_retries
    if labels:
        spec["labels"] = labels
    if meta_data:
        spec["meta_data"] = meta_data
    return spec


def encode(circuit: Any) -> tuple[str, str]:
    """A QuantumCircuit → base64 QPY; text → as is (OpenQASM 2/3, format detected)."""
    if isinstance(circuit, str):
        return circuit, "auto"
    if isinstance(circuit, bytes):
        return circuit.decode(), "auto"
    from qtaskdist_jupyter.core.circuits import codec  # imports qiskit: only for a circuit object

    return codec.encode_circuit(circuit)


def task_payloads(circuits: Any, opts: JsonMap) -> JsonObject | list[JsonObject]:
    """One payload per circuit (one for a single circuit): its text and format, then the
    options that are not None."""
    clean = {k: v for k, v in opts.items() if v is not None}

    def one(c: Any) -> JsonObject:
        text, fmt = encode(c)
        return {"circuit": text, "circuit_format": fmt, **clean}

    if isinstance(circuits, (list, tuple)):
        return [one(c) for c in circuits]
    return one(circuits)


def sweep_payloads(circuits: Any, opts: JsonMap, chunk: int) -> list[JsonObject]:
    """One circuit's ``parameter_bindings`` split over tasks of at most ``chunk`` each (a
    sweep): their payloads, in binding order."""
    if chunk < 1:
        raise InvalidInput(f"chunk must be at least 1, not {chunk}", field="chunk")
    if isinstance(circuits, (list, tuple)):
        raise InvalidInput("chunk splits one circuit's bindings: pass one circuit", field="chunk")
    bindings: JsonValue = opts.get("parameter_bindings") or []
    if not isinstance(bindings, list) or not bindings:
        raise InvalidInput("chunk splits parameter_bindings: none given", field="chunk")
    one = task_payloads(circuits, {**opts, "parameter_bindings": None})
    assert isinstance(one, dict)
    return [
        {**one, "parameter_bindings": bindings[i : i + chunk]}
        for i in range(0, len(bindings), chunk)
    ]
