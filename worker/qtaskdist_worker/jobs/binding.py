"""Parameter bindings of a simulate task: who binds them, Aer or qiskit.

A task's result for a binding must equal the user's in-process run of
``circuit.assign_parameters(binding)`` with the task's seed, bit for bit. Aer's own
``parameter_binds`` gives exactly that only where every parameterized value is a bare
``Parameter``: Aer then passes the bound float on as is. A parameter *expression*
(``rx(t[0]*phi/7 + 0.1)``) Aer evaluates with ``ParameterExpression.bind``, which can differ
from ``assign_parameters`` in the last bit (and so can the counts); a parameterized global
phase Aer does not carry over to every binding. :func:`aer_binds` decides per circuit.
"""

from __future__ import annotations

from typing import Any

from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit

from qtaskdist_jupyter.core.errors import PermanentJobError

# qiskit 2's Parameter and ParameterExpression are Rust classes bound as variables, which
# pyright takes for no type: annotations name a parameter as ParamKey.
ParamKey = Any


def _is_expression(value: Any) -> bool:
    """A parameterized value that is not a bare Parameter (a bound one is a number)."""
    return (
        isinstance(value, ParameterExpression)
        and not isinstance(value, Parameter)
        and bool(value.parameters)
    )


def aer_binds(circuit: QuantumCircuit) -> bool:
    """True when Aer's ``parameter_binds`` gives what ``assign_parameters`` gives: the global
    phase is not parameterized, and every parameterized gate parameter is a bare
    ``Parameter`` outside control flow. Else the worker binds in Python."""
    phase = circuit.global_phase
    # (isinstance does not narrow for pyright: see ParamKey)
    if isinstance(phase, ParameterExpression) and phase.parameters:  # pyright: ignore[reportAttributeAccessIssue]
        return False
    for inst in circuit.data:
        op = inst.operation
        blocks = getattr(op, "blocks", None)
        if blocks and any(b.parameters for b in blocks):
            return False
        if not blocks and op.is_parameterized() and any(_is_expression(v) for v in op.params):
            return False
    return True


def check_binding(binding: dict[str, float], by_name: dict[str, ParamKey]) -> None:
    missing = sorted(set(by_name) - set(binding))
    extra = sorted(set(binding) - set(by_name))
    if missing or extra:
        raise PermanentJobError(
            f"parameter binding {binding} does not match the circuit's parameters "
            f"{sorted(by_name)}" + (f" (missing {missing})" if missing else "")
        )


def bind(circuit: QuantumCircuit, binding: dict[str, float]) -> QuantumCircuit:
    """``circuit.assign_parameters(binding)``, parameters matched by name."""
    by_name = {param.name: param for param in circuit.parameters}
    check_binding(binding, by_name)
    return circuit.assign_parameters({by_name[k]: v for k, v in binding.items()})


def aer_table(
    circuit: QuantumCircuit, bindings: list[dict[str, float]]
) -> dict[ParamKey, list[float]]:
    """The bindings as one ``parameter_binds`` table (one column per parameter)."""
    by_name = {param.name: param for param in circuit.parameters}
    for binding in bindings:
        check_binding(binding, by_name)
    return {param: [float(b[name]) for b in bindings] for name, param in by_name.items()}
