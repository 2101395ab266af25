"""The worker's request planning (pure functions: no services)."""

from __future__ import annotations

import uuid

from qtaskdist_worker.units import InFlight, batch_key, cost_hint, plan_units, split_requests

from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.queue import TaskRow


def _item(task_type: str = "simulate", **payload) -> InFlight:
    tid = uuid.uuid4()
    payload = {"circuit": "OPENQASM 2.0;", "shots": 100, **payload}
    row = TaskRow(tid, task_type, "running", "alice", 1, payload=payload)
    return InFlight("stream:simulate", "1-0", TaskMessage(tid, task_type, 1), row)


def test_equal_run_options_share_a_unit_seeded_or_not() -> None:
    shared = [_item() for _ in range(5)]
    seeded = [_item(seed=s) for s in range(3)]
    points = [_item(seed=s, observables=["ZZ"], parameter_bindings=[{"t": s}]) for s in range(2)]
    other_shots = _item(shots=7)
    units = plan_units([*seeded, *shared, *points, other_shots], batch_size=64)
    assert sorted(len(u) for u in units) == [1, 10]
    assert [i for u in units if len(u) == 10 for i in u] == [*seeded, *shared, *points]


def test_sweeps_arrays_and_big_seeded_tasks_keep_a_unit_of_their_own() -> None:
    small = [_item(seed=s) for s in range(3)]
    sweep = _item(seed=1, parameter_bindings=[{"t": 0.0}, {"t": 1.0}])
    unseeded_sweep = _item(parameter_bindings=[{"t": 0.0}, {"t": 1.0}])
    statevector = _item(statevector=True)
    probabilities = _item(seed=2, probabilities=True)
    big = _item(seed=3, circuit="x" * 10_000, shots=1000)
    alone = [sweep, unseeded_sweep, statevector, probabilities, big]
    assert batch_key(big.row.payload) is None
    units = plan_units([*small, *alone], batch_size=64)
    assert sorted(len(u) for u in units) == [1, 1, 1, 1, 1, 3]
    assert {id(u[0]) for u in units if len(u) == 1} == {id(i) for i in alone}


def test_shared_units_are_cut_at_the_batch_size() -> None:
    units = plan_units([_item() for _ in range(10)], batch_size=4)
    assert sorted(len(u) for u in units) == [2, 4, 4]


def test_units_come_cheapest_first() -> None:
    big = _item(seed=1, shots=100_000)
    sweep = _item(seed=2, parameter_bindings=[{"t": 0.0}] * 50)
    small = _item(seed=3, shots=10)
    conv = _item("c_qir_convert")
    units = plan_units([big, sweep, small, conv], batch_size=64)
    assert [u[0] for u in units] == sorted(
        [big, sweep, small, conv], key=lambda i: cost_hint(i.row.payload)
    )
    assert units[0] == [small] and units[-1] == [big]


def test_requests_are_dealt_round_robin_and_stay_ordered() -> None:
    assert split_requests([1, 2, 3, 4, 5], 2) == [[1, 3, 5], [2, 4]]
    assert split_requests([1, 2], 4) == [[1], [2]]
    assert split_requests([], 3) == []
    assert split_requests([1, 2, 3], 1) == [[1, 2, 3]]
