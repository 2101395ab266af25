"""simulate end to end: real worker processes, real Aer, compared with in-process Aer."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from qiskit import qasm2
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.workers import (
    heavy_payload,
    kill_tree,
    rows,
    run_worker,
    start_worker,
    stop,
    submit,
    wait_until,
)

METHODS = ["automatic", "statevector", "density_matrix", "matrix_product_state", "stabilizer"]
GHZ3 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg c[3];
h q[0];
cx q[0],q[1];
cx q[1],q[2];
s q[2];
h q[2];
measure q -> c;
"""


def _aer(qasm: str, method: str, shots: int, seed: int | None, noise=None) -> dict:
    circ = qasm2.loads(qasm, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    sim = AerSimulator(method=method, noise_model=noise)
    return dict(sim.run(circ, shots=shots, seed_simulator=seed).result().get_counts())


async def test_seeded_results_equal_in_process_aer_for_every_method(service, settings) -> None:
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["h", "s"])
    noise.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["cx"])
    noise.add_all_qubit_readout_error(ReadoutError([[0.97, 0.03], [0.03, 0.97]]))
    noise_spec = {"depolarizing_1q": 0.05, "depolarizing_2q": 0.1, "readout": 0.03}
    payloads = []
    expected = []
    for k, method in enumerate(METHODS):
        seed = 1000 + k
        payloads.append({"circuit": GHZ3, "shots": 333, "seed": seed, "method": method})
        expected.append(_aer(GHZ3, method, 333, seed))
        payloads.append(
            {"circuit": GHZ3, "shots": 257, "seed": seed, "method": method, "noise": noise_spec}
        )
        expected.append(_aer(GHZ3, method, 257, seed, noise))
    # Unseeded tasks with equal options share one Aer call beside the seeded ones.
    payloads += [{"circuit": BELL_QASM2, "shots": 100} for _ in range(20)]
    ids = await submit(service, "simulate", payloads)
    proc = run_worker(settings, "--task-types", "simulate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = await rows(service, ids)
    assert [r["status"] for r in got] == ["completed"] * len(ids), [r["error"] for r in got]
    for r, want, p in zip(got, expected, payloads, strict=False):
        assert r["result"]["counts"] == want, (p["method"], "noise" in p)
        assert r["meta_data"]["seed_simulator"] == p["seed"]
        assert r["meta_data"]["batched_with"] == 1
    # Noise made a difference (so the noisy comparison is not vacuous).
    assert set(got[1]["result"]["counts"]) - {"000", "111"} or set(got[0]["result"]["counts"])
    bells = got[len(expected) :]
    assert all(set(r["result"]["counts"]) <= {"00", "11"} for r in bells)
    assert all(sum(r["result"]["counts"].values()) == 100 for r in bells)
    assert max(r["meta_data"]["batched_with"] for r in bells) > 1
    m = bells[0]["meta_data"]
    for key in ("queue_wait_s", "run_time_s", "simulator_time_s", "worker", "host"):
        assert m[key] is not None, key
    assert m["qiskit_version"] and m["aer_version"]
    assert [a["outcome"] for a in m["attempts"]] == ["completed"]
    assert all(r["attempt"] == 1 for r in got)


async def test_options_observables_bindings_and_errors(service, settings) -> None:
    param = """OPENQASM 3.0;
include "stdgates.inc";
input float theta;
qubit[1] q;
bit[1] c;
rx(theta) q[0];
c[0] = measure q[0];
"""
    ch = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
ch q[0],q[1];
measure q -> c;
"""
    payloads = [
        {"circuit": BELL_QASM2, "shots": 50, "seed": 7, "memory": True, "statevector": True,
         "probabilities": True, "observables": ["ZZ", "XX", {"ZI": 0.5, "IZ": 0.5}],
         "method": "statevector"},
        {"circuit": param, "shots": 200, "seed": 3,
         "parameter_bindings": [{"theta": 0.0}, {"theta": 3.141592653589793}],
         "observables": ["Z"]},
        {"circuit": ch, "shots": 64, "seed": 11},  # ch is not an Aer instruction: transpiled
        {"circuit": BELL_QASM2, "device": "GPU"},
        {"circuit": BELL_QASM2, "observables": ["ZZZ"]},
        {"circuit": "OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n"},
    ]  # fmt: skip
    ids = await submit(service, "simulate", payloads)
    proc = run_worker(settings, "--task-types", "simulate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    bell, bound, ch_row, gpu, bad_obs, bad_circ = await rows(service, ids)

    assert bell["status"] == "completed", bell["error"]
    res = bell["result"]
    assert len(res["memory"]) == 50 and set(res["memory"]) <= {"00", "11"}
    amp = 2**-0.5
    flat = [x for pair in res["statevector"] for x in pair]
    assert flat == pytest.approx([amp, 0, 0, 0, 0, 0, amp, 0], abs=1e-9)
    assert res["probabilities"] == pytest.approx({"00": 0.5, "11": 0.5})
    assert res["expectation_values"] == pytest.approx([1.0, 1.0, 0.0], abs=1e-9)
    assert res["counts"] == _aer(BELL_QASM2, "statevector", 50, 7)

    assert bound["status"] == "completed", bound["error"]
    r0, r1 = bound["result"]["results"]
    assert r0["parameters"] == {"theta": 0.0} and r0["counts"] == {"0": 200}
    assert r1["counts"] == {"1": 200}
    assert r0["expectation_values"] == pytest.approx([1.0]) and r1["expectation_values"][
        0
    ] == pytest.approx(-1.0)

    assert ch_row["status"] == "completed", ch_row["error"]
    assert sum(ch_row["result"]["counts"].values()) == 64

    for r in (gpu, bad_obs, bad_circ):
        assert r["status"] == "failed" and r["retry_count"] == 0  # permanent: no retry
        assert "\n" not in r["error"] and r["meta_data"]["error_id"]
        assert "traceback" not in r["meta_data"]
    assert "GPU" in gpu["error"]
    assert "ZZZ" in bad_obs["error"] and "2 qubits" in bad_obs["error"]


async def test_cancelling_a_running_simulate_kills_its_job_and_the_worker_goes_on(
    service, settings, sync_redis, tmp_path
) -> None:
    """The cancel reaches the worker through stream:cancels: the one job process (which
    would run for ~2 minutes) is killed and replaced, and the next task completes."""
    (slow,) = await submit(service, "simulate", [heavy_payload(layers=1500)])
    log = tmp_path / "w.log"
    w = start_worker(settings, "--concurrency", "1", log=log)
    try:

        async def running() -> bool:
            return (await service.store.get(slow))["status"] == "running"

        await wait_until(running, timeout=60)
        await asyncio.sleep(1.0)  # inside Aer by now
        t0 = time.monotonic()
        await service.cancel(slow, "alice")
        (bell,) = await submit(service, "simulate", [{"circuit": BELL_QASM2, "seed": 7}])

        async def bell_done() -> bool:
            return (await service.store.get(bell))["status"] == "completed"

        await wait_until(bell_done, timeout=60)
        assert time.monotonic() - t0 < 60  # the slow job did not run to its end
        assert sync_redis.xlen("stream:simulate") == 0  # both entries acked
        assert stop(w, signal.SIGTERM) == 0
    finally:
        kill_tree(w)
    s, b = await rows(service, [slow, bell])
    assert s["status"] == "cancelled" and s["result"] is None, s
    assert b["result"]["counts"] == _aer(BELL_QASM2, "automatic", 1024, 7)
    assert "was cancelled; stopping it" in log.read_text()
