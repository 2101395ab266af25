"""Large results through a real worker and the real server: arrays out of the row, slim
lists, the streamed array endpoint, the size limit at submit and in the worker."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import psutil
import pytest
from qiskit import qasm2
from qiskit.quantum_info import Statevector

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import BOB_TOKEN, simulate_spec
from tests.fixtures.workers import rows, run_worker, start_worker, stop, submit, wait_until


def phased_qasm(n: int, measure: bool = False) -> str:
    """H on every qubit, a different phase on each, a CX chain: 2^n distinct amplitudes."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];"]
    lines += [f"h q[{i}];" for i in range(n)]
    lines += [f"rz({0.1 * (i + 1):.3f}) q[{i}];" for i in range(n)]
    lines += [f"cx q[{i}],q[{i + 1}];" for i in range(n - 1)]
    if measure:
        lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def aer_statevector(qasm: str) -> np.ndarray:
    circ = qasm2.loads(qasm, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    circ.remove_final_measurements()
    return np.asarray(Statevector(circ).data)


async def _fetch(jp_fetch, path: str, **kw):
    return await jp_fetch("qtaskdist", "api", *path.split("/"), raise_error=False, **kw)


async def test_large_arrays_are_stored_listed_slim_and_streamed(
    api, jp_fetch, settings, service
) -> None:
    sv20 = phased_qasm(20)
    spec = simulate_spec(sv20, shots=1, payload={"statevector": True}, enqueue=True)
    code, big = await api("POST", "tasks", body=spec)
    assert code == 201, big
    code, mixed = await api(
        "POST",
        "tasks",
        body=simulate_spec(
            phased_qasm(14, measure=True),
            shots=20_000,
            payload={"probabilities": True, "memory": True, "method": "statevector"},
            enqueue=True,
        ),
    )
    assert code == 201, mixed
    small = {"task_type": "simulate", "payload": {"circuit": BELL_QASM2, "shots": 10}}
    code, _ = await api("POST", "tasks/batch", body={"tasks": [small] * 48, "enqueue": True})
    assert code == 201
    proc = run_worker(settings, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # The list: 50 rows, no payload and no result, under 100 KB.
    resp = await _fetch(jp_fetch, "tasks", params={"limit": "50"})
    page = json.loads(resp.body)
    assert len(page["tasks"]) == 50 and len(resp.body) < 100_000, len(resp.body)
    assert all("payload" not in t and "result" not in t for t in page["tasks"])
    assert {t["status"] for t in page["tasks"]} == {"completed"}
    code, wide = await api("GET", "tasks", params={"limit": "3", "include": "result"})
    assert code == 200 and all("result" in t and "payload" not in t for t in wide["tasks"])
    code, narrow = await api("GET", "tasks", params={"limit": "3", "fields": "status"})
    assert code == 200 and all(set(t) == {"task_id", "status"} for t in narrow["tasks"])
    code, bad = await api("GET", "tasks", params={"fields": "status,secret"})
    assert code == 422 and bad["field"] == "fields"

    # The single task: the small part and a reference, not 2^20 amplitudes.
    resp = await _fetch(jp_fetch, f"tasks/{big['task_id']}")
    assert len(resp.body) < 20_000, len(resp.body)
    row = json.loads(resp.body)
    assert row["result"]["counts"] == {}  # no measurements: no counts derived from 2^20
    ref = row["result"]["statevector"]
    assert ref["$array"] == "statevector" and ref["shape"] == [1 << 20]
    assert ref["dtype"] == "<c16" and ref["nbytes"] == 16 << 20 and ref["chunks"] >= 2
    assert len(ref["top"]) == 8 and len(ref["sha256"]) == 64

    # The array endpoint: .npy with type and length, equal to in-process Aer.
    resp = await _fetch(jp_fetch, f"tasks/{big['task_id']}/result/statevector")
    assert resp.code == 200 and resp.headers["Content-Type"] == "application/x-npy"
    assert int(resp.headers["Content-Length"]) == len(resp.body) == ref["npy_bytes"]
    got = np.load(io.BytesIO(resp.body), allow_pickle=False)
    assert np.allclose(got, aer_statevector(sv20), atol=1e-10)
    resp = await _fetch(
        jp_fetch, f"tasks/{big['task_id']}/result/statevector", params={"encoding": "zstd"}
    )
    assert resp.headers["Content-Type"] == "application/zstd"
    assert len(resp.body) == ref["stored_bytes"] == int(resp.headers["Content-Length"])

    # Probabilities and memory of the other task, stored the same way.
    code, row = await api("GET", f"tasks/{mixed['task_id']}")
    res = row["result"]
    # About 11,500 distinct outcomes (240 KB of JSON): the counts are stored too.
    assert res["counts"]["$array"] == "counts" and res["counts"]["shots"] == 20_000
    assert res["probabilities"]["shape"] == [1 << 14] and res["memory"]["shape"] == [20_000]
    resp = await _fetch(jp_fetch, f"tasks/{mixed['task_id']}/result/counts")
    stored = np.load(io.BytesIO(resp.body))
    assert stored.dtype.names == ("key", "count") and stored["count"].sum() == 20_000
    assert len(stored) == res["counts"]["distinct"] and stored["key"].dtype == np.dtype("S14")
    resp = await _fetch(jp_fetch, f"tasks/{mixed['task_id']}/result/probabilities")
    probs = np.load(io.BytesIO(resp.body))
    assert probs.sum() == pytest.approx(1.0)
    resp = await _fetch(jp_fetch, f"tasks/{mixed['task_id']}/result/memory")
    mem = np.load(io.BytesIO(resp.body))
    assert mem.shape == (20_000,) and mem.dtype == np.dtype("S14")

    # Same auth and ownership as the rest; a name the result lacks is a 404.
    resp = await _fetch(
        jp_fetch,
        f"tasks/{big['task_id']}/result/statevector",
        headers={"Authorization": f"token {BOB_TOKEN}"},
    )
    assert resp.code in (403, 404)
    code, body = await api("GET", f"tasks/{big['task_id']}/result/memory")
    assert code == 404 and body["error"] == "task_array_not_found"

    # Deleting the task deletes its chunks.
    tid = uuid.UUID(big["task_id"])
    assert await service.store.array_bytes(tid) == ref["stored_bytes"]
    code, _ = await api("DELETE", f"tasks/{tid}")
    assert code == 204 and await service.store.array_bytes(tid) == 0


async def test_submit_refuses_a_statevector_over_the_result_limit(api) -> None:
    spec = simulate_spec(phased_qasm(26), payload={"statevector": True, "method": "statevector"})
    code, body = await api("POST", "tasks", body=spec)
    assert code == 422, body
    assert body["error"] == "result_too_large" and body["limit"] == "max_result_bytes"
    assert "QTASKDIST_MAX_RESULT_BYTES is 512.0 MiB" in body["detail"]
    assert "1.0 GiB" in body["detail"] and "\n" not in body["detail"]
    code, page = await api("GET", "tasks")
    assert page["tasks"] == []  # nothing written


# What the worker's main process may reach while it stores results; it never holds an
# array (the job process spools them to a file, read here 1 MiB at a time).
WORKER_RSS_BOUND_MB = 300


async def test_worker_fails_an_over_limit_result_fast_and_goes_on(
    service, settings, tmp_path, capsys
) -> None:
    """The worker's limit (1 MiB here) is below the server's: a 17-qubit statevector
    (2 MiB) fails in the job process before Aer runs; a 16-qubit one (1 MiB) is stored."""
    proc = start_worker(
        settings,
        env={"QTASKDIST_MAX_RESULT_BYTES": str(1 << 20)},
        log=tmp_path / "worker.log",
    )
    try:
        ids = await submit(
            service,
            "simulate",
            [{"circuit": phased_qasm(17), "statevector": True, "shots": 1},
             {"circuit": phased_qasm(16), "statevector": True, "shots": 1},
             {"circuit": BELL_QASM2, "shots": 10}],
        )  # fmt: skip
        main = psutil.Process(proc.pid)
        peak = 0

        async def done() -> bool:
            nonlocal peak
            peak = max(peak, main.memory_info().rss)
            got = await rows(service, ids)
            return all(r["status"] in ("completed", "failed") for r in got)

        await wait_until(done, timeout=120, every=0.05)
        over, fits, bell = await rows(service, ids)
        assert over["status"] == "failed" and over["retry_count"] == 0
        assert "QTASKDIST_MAX_RESULT_BYTES is 1.0 MiB" in over["error"]
        assert "\n" not in over["error"]
        assert (over["finished_at"] - over["started_at"]).total_seconds() < 5
        assert fits["status"] == "completed", fits["error"]
        assert fits["result"]["statevector"]["nbytes"] == 1 << 20
        assert bell["status"] == "completed"
        with capsys.disabled():
            print(f"\nworker main process peak RSS: {peak / 2**20:.0f} MB")
        assert peak < WORKER_RSS_BOUND_MB * 2**20, peak
        assert proc.poll() is None  # it goes on
    finally:
        stop(proc)
    assert "database unreachable" not in (tmp_path / "worker.log").read_text()
