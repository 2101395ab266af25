"""OpenQASM 3 through qiskit's Rust parser (``qiskit.qasm3.loads_experimental``).

It reads a small program in about a twentieth of the time of the ANTLR path
(``qasm3.loads``), but it does not yet handle every valid program (``input``, ``reset``,
``if``, ``for``, user gate definitions, ``pi`` in expressions, ``measure q -> c``, gate
modifiers, ``delay``, ``gphase`` with qiskit 2.6): :func:`loads` returns None for what it
refuses, and the codec then takes the ANTLR path, whose error (with line and column) is
the one a user sees. A program it takes gives the circuit the ANTLR path gives
(tests/unit/test_codec.py compares them), except for repeated qubit arguments
(``cx q[0], q[0]``), which it accepts and ANTLR refuses: those go to ANTLR too.

Its refusals of a syntax error are printed by Rust straight to file descriptor 1, not
through ``sys.stdout``. :func:`loads` points that descriptor at ``/dev/null`` for the
call (under a lock; a write by another thread of this process to fd 1 during those
microseconds is lost too).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any

from qiskit import qasm3
from qiskit.circuit import QuantumCircuit

# The native loader under qiskit's wrapper (functools.wraps keeps it as __wrapped__): the
# wrapper's only addition is an ExperimentalWarning on every call.
_native: Any = getattr(qasm3.loads_experimental, "__wrapped__", None)
_lock = threading.Lock()
_devnull: int | None = None


def _loader() -> Any:
    if _native is not None:
        return _native

    def warned(source: str, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return qasm3.loads_experimental(source, **kwargs)

    return warned


def _silenced_call(fn: Any, source: str) -> Any:
    """``fn(source, include_path=())`` with fd 1 pointed at /dev/null meanwhile."""
    global _devnull
    with _lock:
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError, AttributeError):
            return fn(source, include_path=())  # no fd 1 to protect
        try:
            if _devnull is None:
                _devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(_devnull, 1)
            return fn(source, include_path=())
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def repeats_a_qubit(circuit: QuantumCircuit) -> bool:
    """Does any instruction name one qubit twice (which the ANTLR path refuses)?"""
    for inst in circuit.data:
        qubits = inst.qubits
        if len(qubits) > 1 and len(set(qubits)) != len(qubits):
            return True
    return False


def loads(source: str) -> QuantumCircuit | None:
    """The circuit, or None where the Rust parser refuses the program (or reads it
    differently from the ANTLR path)."""
    try:
        circuit = _silenced_call(_loader(), source)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException:  # noqa: BLE001 - any refusal (pyo3 panics included): ANTLR decides
        return None
    if not isinstance(circuit, QuantumCircuit) or repeats_a_qubit(circuit):
        return None
    return circuit
