"""Circuits → task payloads on the client side (kernel/payloads.py): a sweep's chunks."""

from __future__ import annotations

import pytest

from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.kernel.payloads import sweep_payloads, task_payloads
from tests.fixtures.circuits import BELL_QASM2

# What Client.submit_simulate passes: unset options as None.
OPTS = {"shots": 20, "seed": None, "memory": None, "observables": ["Z"]}
POINTS = [{"a": a / 5} for a in range(6)]


def test_a_sweep_is_split_into_chunks_in_binding_order() -> None:
    payloads = sweep_payloads(BELL_QASM2, {**OPTS, "parameter_bindings": POINTS}, 4)
    common = {"circuit": BELL_QASM2, "circuit_format": "auto", "shots": 20, "observables": ["Z"]}
    assert payloads == [
        {**common, "parameter_bindings": POINTS[:4]},
        {**common, "parameter_bindings": POINTS[4:]},
    ]
    assert len(sweep_payloads(BELL_QASM2, {**OPTS, "parameter_bindings": POINTS}, 1)) == 6
    # One chunk holding them all is still a list: submitted as a batch.
    whole = sweep_payloads(BELL_QASM2, {**OPTS, "parameter_bindings": POINTS}, 16)
    assert whole == task_payloads([BELL_QASM2], {**OPTS, "parameter_bindings": POINTS})


@pytest.mark.parametrize(
    ("circuits", "bindings", "chunk", "says"),
    [
        (BELL_QASM2, POINTS, 0, "at least 1"),
        ([BELL_QASM2, BELL_QASM2], POINTS, 2, "pass one circuit"),
        (BELL_QASM2, None, 2, "none given"),
    ],
)
def test_a_chunk_that_cannot_split_is_refused(circuits, bindings, chunk, says) -> None:
    with pytest.raises(InvalidInput, match=says):
        sweep_payloads(circuits, {**OPTS, "parameter_bindings": bindings}, chunk)
