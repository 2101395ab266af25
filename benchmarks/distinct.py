"""B2-DISTINCT and B2-DISTINCT-TEXT: what a notebook sends, one different circuit per point.

* B2-DISTINCT: N distinct ``QuantumCircuit`` objects (4 qubits, 1,000 shots, one seed)
  through ``Client.submit_simulate(list)`` (QPY on the wire), against the user's loop
  ``AerSimulator().run(qc, shots=1000, seed_simulator=seed)`` with Aer's defaults (every
  core, ``OMP_NUM_THREADS`` unset) in one process;
* B2-DISTINCT-TEXT: the same with N distinct OpenQASM 2 programs (3 qubits, 100 shots)
  submitted as text, against ``qasm2.loads`` + the same run.

Every count must equal the loop's. Besides the ratio, the CPU each process spent per task
(psutil): the client (this process: encoding, HTTP, then polling PostgreSQL for the end),
the server, the server's circuit parse children, the worker's main process, its job
processes, PostgreSQL's backends of the benchmark database, Redis.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from .env import ROOT, BenchConfig, Fleet, clear_state, pg

SEED = 1234
SHAPES = {"distinct": (4, 1000), "distinct-text": (3, 100)}  # qubits, shots


def circuit(i: int, n_qubits: int) -> Any:
    """The i-th circuit: two layers of ry (angles of their own) and a cx chain."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(n_qubits, n_qubits, name=f"point{i}")  # a fixed name: QPY repeats
    for layer in range(2):
        for q in range(n_qubits):
            qc.ry(math.fmod(0.37 * (i + 1) * (q + 1) + layer, math.pi), q)
        for q in range(n_qubits - 1):
            qc.cx(q, q + 1)
    qc.measure(range(n_qubits), range(n_qubits))
    return qc


def qasm2_text(i: int, n_qubits: int) -> str:
    from qiskit import qasm2

    return qasm2.dumps(circuit(i, n_qubits))


def inproc_loop(kind: str, n: int) -> dict[str, Any]:
    """The user's loop (run as ``python -m benchmarks.distinct KIND N OUT``)."""
    from qiskit import qasm2
    from qiskit_aer import AerSimulator

    n_qubits, shots = SHAPES[kind]
    sim = AerSimulator()
    items = _items(kind, n)
    sim.run(circuit(0, n_qubits), shots=shots).result()  # warm-up
    answers = []
    start = time.perf_counter()
    for item in items:
        qc = item
        if kind != "distinct":
            qc = qasm2.loads(item, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        res = sim.run(qc, shots=shots, seed_simulator=SEED).result()
        answers.append(dict(res.get_counts()))
    return {"wall_s": time.perf_counter() - start, "n": n, "answers": answers}


def _inproc(kind: str, n: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_NUM_THREADS"}
    cmd = [sys.executable, "-m", "benchmarks.distinct", kind, str(n), str(out)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"in-process {kind} failed: {done.stderr[-2000:]}")
    got = json.loads(out.read_text())
    out.unlink()
    return got


def _cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def _children(pid: int) -> Callable[[], list[int]]:
    """The children of ``pid`` when asked: the server's parse pool grows while it is busy."""

    def pids() -> list[int]:
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    return pids


Group = list[int] | Callable[[], list[int]]


def process_groups(cfg: BenchConfig, server_pid: int, worker_pid: int) -> dict[str, Group]:
    import redis

    worker = psutil.Process(worker_pid)
    with pg(cfg) as conn:
        backends = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (cfg.db_name,),
        ).fetchall()
    r = redis.Redis.from_url(cfg.redis_url)
    redis_pid = int(r.info("server")["process_id"])
    r.close()
    return {
        "client (this process)": [psutil.Process().pid],
        "server": [server_pid],
        # The circuit parse children (core/circuits/sandbox.py), started as needed.
        "server parse pool": _children(server_pid),
        "worker main": [worker_pid],
        "job processes": [c.pid for c in worker.children()],
        "postgres (this db)": [int(b[0]) for b in backends],
        "redis": [redis_pid],
    }


class CpuMeter:
    """CPU seconds per process group between :meth:`start` and :meth:`per_task_us`; a
    group given as a function is listed again at the end (a process it started since
    counts from zero)."""

    def __init__(self, groups: dict[str, Group]) -> None:
        self.groups = groups
        self.before = {k: _cpu(self._pids(k)) for k in groups}

    def _pids(self, name: str) -> list[int]:
        g = self.groups[name]
        return g() if callable(g) else g

    def per_task_us(self, n: int) -> dict[str, float]:
        out = {}
        for k in self.groups:
            now, then = _cpu(self._pids(k)), self.before[k]
            out[k] = sum(t - then.get(pid, 0.0) for pid, t in now.items()) / n * 1e6
        out["total"] = sum(out.values())
        return {k: round(v, 1) for k, v in out.items()}


def _items(kind: str, n: int) -> list[Any]:
    n_qubits, _ = SHAPES[kind]
    if kind == "distinct":
        return [circuit(i, n_qubits) for i in range(n)]
    return [qasm2_text(i, n_qubits) for i in range(n)]


def _submit(api: Any, kind: str, items: list[Any]) -> float:
    """``Client.submit_simulate(items)``, as a notebook calls it; returns its start time."""
    from qtaskdist_jupyter.kernel.client import Client

    client = Client(api.base.removesuffix("qtaskdist/api/"), api.token, timeout_s=120)
    t0 = time.time()
    client.submit_simulate(items, shots=SHAPES[kind][1], seed=SEED)
    return t0


def case(api: Any, cfg: BenchConfig, kind: str, n: int, worker_args: list[str]) -> dict[str, Any]:
    from .users import _finished_rows

    base = _inproc(kind, n)
    items = _items(kind, n)  # built beforehand: the notebook's own work, not the pipeline's
    with Fleet(cfg).start(1, worker_args) as fleet:
        meter = CpuMeter(process_groups(cfg, api.server_pid, fleet.procs[0].pid))
        t0 = _submit(api, kind, items)
        rows = _finished_rows(cfg, n, timeout_s=max(300.0, n / 20))
        cpu = meter.per_task_us(n)
    clear_state(cfg)
    bad = [r for r in rows if r[1] != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {n} tasks did not complete; first: {bad[0][4]}")
    wall = max(r[5] for r in rows) - t0
    by_name = {r[2]["circuit"]: r[3]["counts"] for r in rows}
    from qtaskdist_jupyter.kernel.payloads import encode

    keys = [encode(item)[0] for item in items]
    off = sum(by_name.get(k) != want for k, want in zip(keys, base["answers"], strict=True))
    if off:
        raise RuntimeError(f"B2-{kind.upper()}: {off} of {n} counts differ from the loop's")
    return {
        "workload": kind,
        "pipeline": {"n": n, "wall_s": wall, "tasks_per_s": n / wall, "worker_args": worker_args},
        "inproc_loop": {"wall_s": base["wall_s"], "n": n, "omp_num_threads": None},
        "ratio_inproc_over_pipeline": base["wall_s"] / wall,
        "counts_equal_inproc": n,
        "cpu_us_per_task": cpu,
    }


if __name__ == "__main__":
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Path(out).write_text(json.dumps(inproc_loop(kind, n)))
