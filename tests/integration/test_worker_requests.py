"""Many tasks per job request (issue 12): each keeps its own result, seed and time limit.

Real worker processes against real PostgreSQL / Redis / Aer; the expected counts come from
in-process Aer with the same seeds. These check behaviour, not speed (that is B2).
"""

from __future__ import annotations

from qiskit import qasm2
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.workers import FOREVER_QASM3, heavy_payload, rows, run_worker, submit


def _loop_counts(qasm: str, shots: int, seeds: list[int]) -> list[dict[str, int]]:
    """The user's own loop: one AerSimulator().run per seed."""
    circ = qasm2.loads(qasm, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    sim = AerSimulator()
    return [dict(sim.run(circ, shots=shots, seed_simulator=s).result().get_counts()) for s in seeds]


async def test_a_seeded_batch_equals_the_in_process_loop(service, settings) -> None:
    seeds = list(range(200))
    ids = await submit(
        service, "simulate", [{"circuit": BELL_QASM2, "shots": 100, "seed": s} for s in seeds]
    )
    # Two job processes, so the batch is dealt into several requests of many units.
    proc = run_worker(settings, "--task-types", "simulate", "--concurrency", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = await rows(service, ids)
    assert [r["status"] for r in got] == ["completed"] * 200
    assert [r["result"]["counts"] for r in got] == _loop_counts(BELL_QASM2, 100, seeds)
    assert [r["meta_data"]["seed_simulator"] for r in got] == seeds
    # They shared units (one job call each, every task its own Aer call and seed), and
    # several finished in one settle.
    assert min(r["meta_data"]["batched_with"] for r in got) > 1
    assert len({r["finished_at"] for r in got}) < 200


async def test_a_slow_task_does_not_hold_back_its_request_mates(service, settings) -> None:
    quick = await submit(
        service, "simulate", [{"circuit": BELL_QASM2, "shots": 100, "seed": s} for s in range(30)]
    )
    (slow,) = await submit(service, "simulate", [heavy_payload(16, shots=1000)])
    # One job process: all 31 tasks are claimed by one read and travel in one request.
    proc = run_worker(settings, "--task-types", "simulate", "--concurrency", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    slow_row = (await rows(service, [slow]))[0]
    quick_rows = await rows(service, quick)
    assert slow_row["status"] == "completed", slow_row["error"]
    assert all(r["status"] == "completed" for r in quick_rows)
    # The quick tasks were settled while the slow one still ran (it runs for seconds),
    # not when the whole request ended.
    last_quick = max(r["finished_at"] for r in quick_rows)
    assert last_quick <= slow_row["started_at"] or (
        (slow_row["finished_at"] - last_quick).total_seconds() > 1.0
    )
    assert [r["result"]["counts"] for r in quick_rows] == _loop_counts(BELL_QASM2, 100, range(30))


async def test_a_task_over_its_limit_fails_alone_and_its_request_mates_complete(
    service, settings
) -> None:
    # Units run cheapest first: these come before the endless one, these after it.
    before = await submit(
        service, "simulate", [{"circuit": BELL_QASM2, "shots": 100, "seed": s} for s in range(5)]
    )
    (endless,) = await submit(service, "simulate", [{"circuit": FOREVER_QASM3, "time_limit_s": 1}])
    after = await submit(
        service,
        "simulate",
        [{"circuit": BELL_QASM2, "shots": 5000, "seed": s} for s in range(100, 105)],
    )
    proc = run_worker(settings, "--task-types", "simulate", "--concurrency", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = (await rows(service, [endless]))[0]
    assert row["status"] == "failed" and row["retry_count"] == 0
    assert row["error"] == "exceeded its time limit of 1 s"
    got_before = await rows(service, before)
    got_after = await rows(service, after)
    assert [r["result"]["counts"] for r in got_before] == _loop_counts(BELL_QASM2, 100, range(5))
    assert [r["result"]["counts"] for r in got_after] == _loop_counts(
        BELL_QASM2, 5000, range(100, 105)
    )


async def test_a_seeded_unit_over_its_limit_is_run_again_task_by_task(service, settings) -> None:
    # Equal run options, so all six share one unit (one limit); the endless one overruns
    # it, then each task runs alone under its own limit: only the endless one fails.
    opts = {"shots": 100, "time_limit_s": 2}
    quick = await submit(
        service, "simulate", [{"circuit": BELL_QASM2, "seed": s, **opts} for s in range(5)]
    )
    (endless,) = await submit(service, "simulate", [{"circuit": FOREVER_QASM3, "seed": 1, **opts}])
    proc = run_worker(settings, "--task-types", "simulate", "--concurrency", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = (await rows(service, [endless]))[0]
    assert row["status"] == "failed" and row["error"] == "exceeded its time limit of 2 s"
    got = await rows(service, quick)
    assert [r["result"]["counts"] for r in got] == _loop_counts(BELL_QASM2, 100, range(5))
    assert {r["meta_data"]["batched_with"] for r in got} == {1}  # re-run alone


async def test_a_sweep_binds_in_aer_and_equals_bound_circuits_run_in_process(
    service, settings
) -> None:
    theta = Parameter("theta")
    qasm3 = _SWEEP_QASM3
    points = [-3.0 + 0.5 * k for k in range(13)]
    bindings = [{"theta": t} for t in points]
    (tid,) = await submit(
        service,
        "simulate",
        [{"circuit": qasm3, "shots": 300, "seed": 9, "parameter_bindings": bindings,
          "observables": ["ZI", "IZ", "ZZ", "XX"]}],
    )  # fmt: skip
    proc = run_worker(settings, "--task-types", "simulate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = await rows(service, [tid])
    assert row["status"] == "completed", row["error"]
    results = row["result"]["results"]

    ansatz = qasm2_free_ansatz(theta)
    sim = AerSimulator()
    bound = []
    for t in points:
        qc = ansatz.assign_parameters({theta: t})
        body = qc.copy_empty_like()
        for inst in qc.data[:-2]:
            body.append(inst)
        for k, label in enumerate(["ZI", "IZ", "ZZ", "XX"]):
            body.save_expectation_value(SparsePauliOp(label), [0, 1], label=f"exp{k}")
        for inst in qc.data[-2:]:
            body.append(inst)
        bound.append(body)
    expected = sim.run(bound, shots=300, seed_simulator=9).result()
    for k, (t, res) in enumerate(zip(points, results, strict=True)):
        assert res["parameters"] == {"theta": t}
        assert res["counts"] == dict(expected.get_counts(k))
        exp_vals = [float(expected.data(k)[f"exp{j}"]) for j in range(4)]
        assert res["expectation_values"] == exp_vals


async def test_a_sweep_on_an_idle_worker_borrows_its_threads_and_keeps_every_seed(
    service, settings
) -> None:
    """A sweep that starts while every job process is idle runs its bindings on all the
    pool's threads (Dispatcher._lent_threads); each binding keeps its own seed, so the
    result equals one serial in-process call, counts and expectation values alike."""
    theta = Parameter("theta")
    points = [-3.0 + 0.06 * k for k in range(100)]
    (tid,) = await submit(
        service,
        "simulate",
        [{"circuit": _SWEEP_QASM3, "shots": 200, "seed": 11,
          "parameter_bindings": [{"theta": t} for t in points], "observables": ["ZZ", "XX"]}],
    )  # fmt: skip
    proc = run_worker(settings, "--task-types", "simulate", "--concurrency", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = await rows(service, [tid])
    assert row["status"] == "completed", row["error"]
    assert row["meta_data"]["aer_threads"] == 2

    qc = qasm2_free_ansatz(theta)
    body = qc.copy_empty_like()
    for inst in qc.data[:-2]:
        body.append(inst)
    for k, label in enumerate(["ZZ", "XX"]):
        body.save_expectation_value(SparsePauliOp(label), [0, 1], label=f"exp{k}")
    for inst in qc.data[-2:]:
        body.append(inst)
    expected = (
        AerSimulator()
        .run(body, parameter_binds=[{theta: points}], shots=200, seed_simulator=11)
        .result()
    )
    results = row["result"]["results"]
    assert [r["counts"] for r in results] == [dict(expected.get_counts(k)) for k in range(100)]
    assert [r["expectation_values"] for r in results] == [
        [float(expected.data(k)[f"exp{j}"]) for j in range(2)] for k in range(100)
    ]


def _expression_circuit():
    """A circuit with parameter expressions, as a notebook builds one (ParameterVector)."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    t, phi = ParameterVector("t", 2), Parameter("phi")
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.rx(t[0] + 2 * phi, 0)
    qc.ry(phi * t[1] - 0.3, 1)
    qc.cx(0, 2)
    qc.ry((t[0] - phi) * (t[1] + 0.5), 2)
    qc.rx(t[0] * phi / 7 + 0.1, 1)
    qc.measure([0, 1, 2], [0, 1, 2])
    return qc


def _with_observables(qc, labels: list[str]):
    body = qc.copy_empty_like()
    for inst in qc.data[:-3]:
        body.append(inst)
    for k, label in enumerate(labels):
        body.save_expectation_value(SparsePauliOp(label), [0, 1, 2], label=f"exp{k}")
    for inst in qc.data[-3:]:
        body.append(inst)
    return body


def _answer(result, k: int, n_obs: int) -> tuple[dict[str, int], list[float]]:
    return dict(result.get_counts(k)), [float(result.data(k)[f"exp{j}"]) for j in range(n_obs)]


async def test_bindings_with_expressions_equal_the_in_process_bound_run(service, settings) -> None:
    """Each binding's counts and expectation values equal the user's in-process run of
    ``qc.assign_parameters(binding)`` with the seed the task reports, bit for bit: tasks of
    one binding each, and one task of several."""
    import random

    from qtaskdist_jupyter.core.circuits.codec import encode_circuit

    qc, obs = _expression_circuit(), ["ZZZ", "XXI", "IYY"]
    by_name = {p.name: p for p in qc.parameters}
    rng = random.Random(5)
    points = [{n: rng.uniform(-3, 3) for n in sorted(by_name)} for _ in range(16)]
    source, _fmt = encode_circuit(qc)
    base = {"circuit": source, "shots": 1000, "observables": obs}
    singles = [{**base, "seed": 100 + k, "parameter_bindings": [b]} for k, b in enumerate(points)]
    ids = await submit(
        service, "simulate", [*singles, {**base, "seed": 7, "parameter_bindings": points}]
    )
    proc = run_worker(settings, "--task-types", "simulate", "--concurrency", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = await rows(service, ids)
    assert [r["status"] for r in got] == ["completed"] * len(ids), got[0]["error"]

    sim, body = AerSimulator(), _with_observables(qc, obs)

    def inproc(b: dict[str, float], seed: int) -> tuple[dict[str, int], list[float]]:
        bound = body.assign_parameters({by_name[n]: v for n, v in b.items()})
        return _answer(sim.run(bound, shots=1000, seed_simulator=seed).result(), 0, len(obs))

    *single_rows, sweep_row = got
    for b, row in zip(points, single_rows, strict=True):
        (res,) = row["result"]["results"]
        want = inproc(b, row["meta_data"]["seed_simulator"])
        assert (res["counts"], res["expectation_values"]) == want
    seeds = sweep_row["meta_data"]["seed_simulator"]
    assert seeds == [7 + 2113 * k for k in range(len(points))]
    for b, res, seed in zip(points, sweep_row["result"]["results"], seeds, strict=True):
        assert (res["counts"], res["expectation_values"]) == inproc(b, seed)
    # These bindings are ones where Aer's own binding gives something else: the case holds.
    table = {by_name[n]: [b[n] for b in points] for n in by_name}
    aer = sim.run(body, parameter_binds=[table], shots=1000, seed_simulator=7).result()
    assert any(_answer(aer, k, len(obs)) != inproc(b, seeds[k]) for k, b in enumerate(points))


_SWEEP_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
input float[64] theta;
qubit[2] q;
bit[2] c;
x q[0];
ry(theta) q[1];
cx q[1], q[0];
c = measure q;
"""


def qasm2_free_ansatz(theta: Parameter):
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2, 2)
    qc.x(0)
    qc.ry(theta, 1)
    qc.cx(1, 0)
    qc.measure([0, 1], [0, 1])
    return qc
