"""The worker's decisions as pure functions (no services): what an autoclaimed entry
still means, which running rows the reconciler releases, which tasks share an Aer call,
how long a retry waits, and which side task ended."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from qtaskdist_worker.autoclaim import Action, autoclaim_action
from qtaskdist_worker.reconciler import live_workers, orphaned
from qtaskdist_worker.retry import OUTAGE_CAP_S, OUTAGE_FIRST_S, backoff_s, until_up
from qtaskdist_worker.units import SHARE_MAX_COST, batch_key
from qtaskdist_worker.worker import first_ended

from qtaskdist_jupyter.core.queue import TaskRow

# ---- autoclaim -----------------------------------------------------------------------


def _row(status: str, attempt: int, worker: str | None = None) -> TaskRow:
    return TaskRow(uuid.uuid4(), "simulate", status, "alice", attempt, worker=worker)


def test_a_queued_row_at_the_messages_attempt_is_claimed() -> None:
    assert autoclaim_action(_row("queued", 3), 3, alive=set()) is Action.CLAIM


@pytest.mark.parametrize("msg_attempt", [2, 4])
def test_a_queued_row_at_another_attempt_is_acked(msg_attempt: int) -> None:
    # 2: the row was retried since (its new message is elsewhere); 4: cannot claim ahead.
    assert autoclaim_action(_row("queued", 3), msg_attempt, alive=set()) is Action.ACK


def test_a_running_row_of_a_dead_worker_is_taken_over_and_of_a_live_one_left() -> None:
    row = _row("running", 4, worker="w1")
    assert autoclaim_action(row, 3, alive={"w2"}) is Action.TAKE_OVER
    assert autoclaim_action(row, 3, alive={"w1", "w2"}) is Action.WAIT


@pytest.mark.parametrize("msg_attempt", [2, 4])
def test_a_running_row_on_another_attempt_is_acked_whoever_runs_it(msg_attempt: int) -> None:
    # 2: taken over or retried since; 4: the running attempt is not this message's.
    row = _row("running", 4, worker="dead")
    assert autoclaim_action(row, msg_attempt, alive=set()) is Action.ACK


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_row_is_acked(status: str) -> None:
    assert autoclaim_action(_row(status, 1), 1, alive=set()) is Action.ACK
    assert autoclaim_action(_row(status, 2), 1, alive=set()) is Action.ACK


def test_an_entry_without_a_row_is_acked() -> None:
    assert autoclaim_action(None, 1, alive=set()) is Action.ACK


# ---- reconciler ----------------------------------------------------------------------

NOW = 1_000_000.0


def _running(worker: str, started_s_ago: float | None) -> TaskRow:
    started = None
    if started_s_ago is not None:
        started = datetime.fromtimestamp(NOW - started_s_ago, UTC)
    return TaskRow(
        uuid.uuid4(), "simulate", "running", "alice", 1, worker=worker, claimed_at=started
    )


def test_live_workers_are_those_whose_heartbeat_is_at_most_stale_after_s_old() -> None:
    workers = {"fresh": {"ts": NOW - 5}, "edge": {"ts": NOW - 10}, "stale": {"ts": NOW - 10.5},
               "never": {}}  # fmt: skip
    assert live_workers(workers, 10, now=NOW) == {"fresh", "edge"}


def test_another_workers_row_is_orphaned_exactly_when_that_worker_is_not_alive() -> None:
    row = _running("w1", started_s_ago=0)
    assert orphaned(row, {"w1"}, "me", set(), 60, now=NOW) is False
    assert orphaned(row, {"me"}, "me", set(), 60, now=NOW) is True
    # Without a caller (the CLI's reconcile), rows are judged by liveness alone.
    assert orphaned(row, set(), None, set(), 60, now=NOW) is True


def test_my_row_in_flight_is_never_orphaned_even_with_my_heartbeat_stale() -> None:
    row = _running("me", started_s_ago=3600)
    assert orphaned(row, set(), "me", {row.task_id}, 60, now=NOW) is False


def test_my_row_not_in_flight_is_orphaned_only_past_the_visibility_timeout() -> None:
    # A claim whose reply an outage swallowed: released once it is older than the
    # timeout, and not before (its coroutine may not have recorded it yet).
    assert orphaned(_running("me", 59.9), {"me"}, "me", set(), 60, now=NOW) is False
    assert orphaned(_running("me", 60.1), {"me"}, "me", set(), 60, now=NOW) is True
    assert orphaned(_running("me", None), {"me"}, "me", set(), 60, now=NOW) is True


def test_orphaned_reads_the_clock_when_not_given_one() -> None:
    claimed = datetime.now(UTC) - timedelta(seconds=120)
    row = TaskRow(uuid.uuid4(), "simulate", "running", "alice", 1, worker="me", claimed_at=claimed)
    assert orphaned(row, {"me"}, "me", set(), 60) is True
    assert live_workers({"w": {"ts": time.time()}}, 1) == {"w"}


# ---- batch key -----------------------------------------------------------------------

BASE = {"circuit": "OPENQASM 2.0;", "shots": 100}


def test_equal_options_share_a_key_and_the_circuit_does_not_matter() -> None:
    assert batch_key(BASE) == batch_key({**BASE, "circuit": "other"})
    assert batch_key(BASE) is not None


def test_defaults_equal_their_explicit_values() -> None:
    explicit = {**BASE, "method": "automatic", "device": "CPU", "memory": False,
                "noise": {"depolarizing_1q": 0, "depolarizing_2q": 0.0, "readout": 0}}  # fmt: skip
    assert batch_key(BASE) == batch_key(explicit)
    assert batch_key({"circuit": "x"}) == batch_key({"circuit": "x", "shots": 1024})


@pytest.mark.parametrize(
    "change",
    [{"shots": 101}, {"method": "statevector"}, {"device": "GPU"}, {"memory": True},
     {"noise": {"depolarizing_1q": 0.01}}, {"noise": {"depolarizing_2q": 0.01}},
     {"noise": {"readout": 0.01}}, {"time_limit_s": 5}],
)  # fmt: skip
def test_any_differing_option_splits_the_key(change: dict[str, Any]) -> None:
    assert batch_key({**BASE, **change}) is not None
    assert batch_key({**BASE, **change}) != batch_key(BASE)


@pytest.mark.parametrize(
    "alone",
    [{"statevector": True}, {"probabilities": True},
     {"parameter_bindings": [{"t": 1}, {"t": 2}]}],
)  # fmt: skip
def test_saving_or_sweeping_tasks_run_alone(alone: dict[str, Any]) -> None:
    assert batch_key({**BASE, **alone}) is None


def test_a_costly_task_runs_alone() -> None:
    # cost_hint grows with the circuit text and the shots; just past the bound it is alone.
    shots = SHARE_MAX_COST // len(BASE["circuit"]) + 1
    assert batch_key({**BASE, "shots": shots}) is None
    assert batch_key({**BASE, "shots": shots // 2}) is not None


@pytest.mark.parametrize(
    "shares",
    [{"seed": 0}, {"seed": 7}, {"observables": ["ZZ"]}, {"parameter_bindings": []},
     {"parameter_bindings": [{"t": 1}]}],
)  # fmt: skip
def test_seeded_observable_or_single_point_tasks_share(shares: dict[str, Any]) -> None:
    # Each is its own Aer call inside the unit, so a seed or one point need not split it.
    assert batch_key({**BASE, **shares}) == batch_key(BASE)


def test_explicit_none_or_false_options_still_share() -> None:
    shared = {**BASE, "seed": None, "statevector": False, "observables": None,
              "parameter_bindings": None}  # fmt: skip
    assert batch_key(shared) == batch_key(BASE)


# ---- backoff -------------------------------------------------------------------------


class _Edge(random.Random):
    """Draws the lowest (or highest) jitter every time."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("retry_count", "ceiling"), [(0, 1.0), (1, 2.0), (3, 8.0), (5, 32.0), (6, 60.0), (7, 60.0)]
)
def test_backoff_doubles_from_base_and_stops_at_the_cap(retry_count: int, ceiling: float) -> None:
    hi = backoff_s(retry_count, base_s=1.0, cap_s=60.0, rng=_Edge(high=True))
    lo = backoff_s(retry_count, base_s=1.0, cap_s=60.0, rng=_Edge(high=False))
    assert hi == pytest.approx(ceiling)
    assert lo == pytest.approx(ceiling / 2)


def test_backoff_survives_huge_retry_counts() -> None:
    assert backoff_s(10**9, base_s=0.5, cap_s=30.0, rng=_Edge(high=True)) == 30.0


def test_backoff_jitter_stays_in_half_to_one_of_the_ceiling_and_spreads() -> None:
    rng = random.Random(1)
    draws = [backoff_s(2, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(2000)]
    assert all(2.0 <= d <= 4.0 for d in draws)
    # A burst of failures must not come back as a burst: the draws cover the range.
    assert min(draws) < 2.1 and max(draws) > 3.9
    assert 2.0 <= backoff_s(2, base_s=1.0, cap_s=60.0) <= 4.0


# ---- side tasks ----------------------------------------------------------------------


async def _forever() -> None:
    await asyncio.sleep(3600)


async def _fails() -> None:
    await asyncio.sleep(0.01)
    raise RuntimeError("boom")


async def _returns() -> None:
    await asyncio.sleep(0.01)


@pytest.mark.parametrize(("ending", "error"), [(_fails, RuntimeError), (_returns, None)])
def test_the_side_task_that_ends_is_named_with_its_error(ending: Any, error: Any) -> None:
    async def main() -> list[tuple[str, BaseException | None]]:
        tasks = {"heartbeat": asyncio.create_task(_forever()),
                 "cancel watch": asyncio.create_task(ending())}  # fmt: skip
        try:
            return await asyncio.wait_for(first_ended(tasks), timeout=5)
        finally:
            for t in tasks.values():
                t.cancel()

    [(name, exc)] = asyncio.run(main())
    assert name == "cancel watch"
    assert (type(exc) if exc else None) is error


# ---- who binds a sweep's parameters --------------------------------------------------


def test_aer_binds_only_bare_parameters_and_python_binds_expressions() -> None:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter, ParameterVector
    from qtaskdist_worker.jobs.binding import aer_binds

    t, phi = ParameterVector("t", 2), Parameter("phi")

    def circuit(*angles: Any) -> QuantumCircuit:
        qc = QuantumCircuit(2)
        for a in angles:
            qc.rx(a, 0)
        qc.cx(0, 1)
        return qc

    assert aer_binds(circuit(phi, t[0], 0.5))  # bare Parameters and numbers
    assert aer_binds(circuit())  # nothing to bind
    assert not aer_binds(circuit(phi, t[0] + 2 * phi))  # one expression is enough
    assert not aer_binds(circuit(t[0] * phi / 7 + 0.1))
    assert not aer_binds(circuit(2 * phi))
    phased = circuit(phi)
    phased.global_phase = phi  # Aer does not carry it to every binding
    assert not aer_binds(phased)
    looped = QuantumCircuit(1, 1)
    with looped.if_test((looped.clbits[0], 1)):
        looped.rx(phi, 0)
    assert not aer_binds(looped)  # a parameter inside control flow


def test_only_control_flow_or_a_reused_measured_qubit_sends_a_program_to_the_source_walk() -> None:
    from qiskit import QuantumCircuit
    from qtaskdist_worker.jobs.qir_profile import may_break_profile

    plain = QuantumCircuit(2, 2)
    plain.h(0)
    plain.cx(0, 1)
    plain.measure([0, 1], [0, 1])
    plain.barrier()  # not a use of a measured qubit
    assert not may_break_profile(plain)
    reused = plain.copy()
    reused.x(0)
    assert may_break_profile(reused)
    measured_twice = plain.copy()
    measured_twice.measure(1, 0)
    assert may_break_profile(measured_twice)
    branching = QuantumCircuit(1, 1)
    with branching.if_test((branching.clbits[0], 1)):
        branching.x(0)
    assert may_break_profile(branching)


# ---- until_up ------------------------------------------------------------------------
def test_until_up_waits_out_an_outage_doubling_to_the_cap(monkeypatch, caplog) -> None:
    from qtaskdist_jupyter.core.errors import DatabaseUnavailable

    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 7:
            raise DatabaseUnavailable("PostgreSQL unreachable")
        return "written"

    with caplog.at_level("WARNING", logger="qtaskdist_worker"):
        assert asyncio.run(until_up(flaky, "settle")) == "written"
    expected = [OUTAGE_FIRST_S * 2**k for k in range(5)] + [OUTAGE_CAP_S] * 2
    assert slept == pytest.approx(expected) and calls == 8
    assert "settle failed (PostgreSQL unreachable); retrying in 0.2 s" in caplog.messages[0]


def test_until_up_gives_any_other_error_back_at_once(monkeypatch) -> None:
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)

    async def refused() -> None:
        raise ValueError("a data error is not an outage")

    with pytest.raises(ValueError, match="not an outage"):
        asyncio.run(until_up(refused, "complete"))
    assert slept == []
