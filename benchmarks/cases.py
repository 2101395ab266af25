"""B1–B6. Each returns a dict of numbers; comparisons are measured in the same call."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from .env import BELL, ROOT, BenchConfig, Fleet, clear_state, pg


class Api:
    """The REST API as a notebook client calls it (token auth, keep-alive)."""

    def __init__(self, url: str, token: str) -> None:
        self.base = url + "qtaskdist/api/"
        self.token = token
        self.server_pid: int | None = None  # set by the harness: CPU per task by process
        self.headers = {"Authorization": f"token {token}"}
        self.http = httpx.Client(base_url=self.base, headers=self.headers, timeout=120)

    def post_batch(self, body: bytes) -> dict[str, Any]:
        r = self.http.post(
            "tasks/batch", content=body, headers={"Content-Type": "application/json"}
        )
        r.raise_for_status()
        return r.json()

    def post_task(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post("tasks", json=spec)
        r.raise_for_status()
        return r.json()

    def events(self, after: str | None, timeout_s: float, status: str = "") -> dict[str, Any]:
        params: dict[str, Any] = {"timeout_s": timeout_s}
        if after:
            params["after"] = after
        if status:
            params["status"] = status
        r = self.http.get("events", params=params)
        r.raise_for_status()
        return r.json()

    def close(self) -> None:
        self.closing = True
        self.http.close()


def bell_spec(shots: int) -> dict[str, Any]:
    return {"task_type": "simulate", "payload": {"circuit": BELL, "shots": shots}}


def batch_body(n: int, shots: int, batch_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"tasks": [bell_spec(shots)] * n, "enqueue": True}
    if batch_id:
        body["batch_id"] = batch_id
    return json.dumps(body).encode()


def submit(api: Api, n: int, shots: int, chunk: int) -> str:
    """Submit n Bell tasks as one batch id, ``chunk`` tasks per request."""
    batch_id = str(uuid.uuid4())
    left = n
    while left:
        k = min(chunk, left)
        api.post_batch(batch_body(k, shots, batch_id))
        left -= k
    return batch_id


def wait_finished(cfg: BenchConfig, n: int, timeout_s: float) -> dict[str, Any]:
    """Poll PostgreSQL until n rows are finished; the end time is the last finished_at."""
    deadline = time.monotonic() + timeout_s
    with pg(cfg) as conn:
        while True:
            done, ok = conn.execute(
                "SELECT count(*) FILTER (WHERE status IN ('completed','failed','cancelled')),"
                " count(*) FILTER (WHERE status = 'completed') FROM tasks"
            ).fetchone()
            if done >= n:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{n} finished after {timeout_s} s")
            time.sleep(0.05)
        last = conn.execute("SELECT extract(epoch FROM max(finished_at)) FROM tasks").fetchone()
    return {"finished": done, "completed": ok, "last_finished_epoch": float(last[0])}


# ---- B1 ------------------------------------------------------------------------------
async def bulk_submit_rate(
    post: Callable[[bytes], Awaitable[dict[str, Any]]],
    clear: Callable[[], None],
    n: int,
    shots: int,
    reps: int = 3,
) -> dict[str, Any]:
    """B1's bulk path: ``post`` one tasks/batch body of n Bell tasks (create + enqueue),
    ``reps`` times, emptying the queue between; the best rep is the rate."""
    body = batch_body(n, shots)
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        got = await post(body)
        walls.append(time.perf_counter() - t0)
        if got["count"] != n or len(got["task_ids"]) != n:
            raise RuntimeError(f"batch answered {got['count']} tasks, not {n}")
        clear()
    return {"n": n, "wall_s": walls, "tasks_per_s": n / min(walls)}


def b1_bulk(api: Api, cfg: BenchConfig, n: int, reps: int = 3) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=api.base, headers=api.headers, timeout=120) as h:

            async def post(body: bytes) -> dict[str, Any]:
                r = await h.post(
                    "tasks/batch", content=body, headers={"Content-Type": "application/json"}
                )
                r.raise_for_status()
                return r.json()

            return await bulk_submit_rate(post, lambda: clear_state(cfg), n, cfg.shots, reps)

    return asyncio.run(go())


async def _per_task(url: str, headers: dict[str, str], n: int, shots: int, conc: int) -> float:
    spec = bell_spec(shots)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        left = n

        async def one_client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                r = await http.post("tasks", json=spec)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(conc)))
        return time.perf_counter() - t0


def b1(api: Api, cfg: BenchConfig, n: int, n_single: int, conc: int = 8) -> dict[str, Any]:
    bulk = b1_bulk(api, cfg, n)
    wall = asyncio.run(_per_task(api.base, api.headers, n_single, cfg.shots, conc))
    clear_state(cfg)
    single = {"n": n_single, "concurrency": conc, "wall_s": wall, "tasks_per_s": n_single / wall}
    return {
        "bulk": bulk,
        "per_task": single,
        "ratio_bulk_over_per_task": bulk["tasks_per_s"] / single["tasks_per_s"],
        "target_bulk_tasks_per_s": 20_000,
    }


# ---- baseline ------------------------------------------------------------------------
def inproc(
    n: int, shots: int, qasm: str, *, mode: str = "loop", omp: str | None, reps: int = 1
) -> dict[str, Any]:
    import os

    with tempfile.NamedTemporaryFile("w", suffix=".qasm", delete=False) as f:
        f.write(qasm)
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    cmd = [sys.executable, "-m", "benchmarks.inproc", "--qasm-file", f.name, "--n", str(n)]
    cmd += ["--shots", str(shots), "--mode", mode, "--reps", str(reps)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    Path(f.name).unlink()
    if out.returncode:
        raise RuntimeError(f"in-process baseline failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- B2 / B5 / B6: end to end --------------------------------------------------------
def end_to_end(api: Api, cfg: BenchConfig, n: int, chunk: int, timeout_s: float) -> dict[str, Any]:
    t0 = time.time()
    submit(api, n, cfg.shots, chunk)
    submitted = time.time() - t0
    done = wait_finished(cfg, n, timeout_s)
    wall = done["last_finished_epoch"] - t0
    if done["completed"] != n:
        raise RuntimeError(f"only {done['completed']} of {n} tasks completed")
    return {"n": n, "submit_s": submitted, "wall_s": wall, "tasks_per_s": n / wall}


def b2(
    api: Api, cfg: BenchConfig, n: int, chunk: int, setups: dict[str, list[str]]
) -> dict[str, Any]:
    """Each worker setup (name → worker args) end to end, ÷ the in-process loop; the
    first setup is the headline (the worker's defaults)."""
    base_default = inproc(n, cfg.shots, BELL, omp=None)
    base_omp1 = inproc(n, cfg.shots, BELL, omp="1")
    best = min(base_default["wall_s"], base_omp1["wall_s"])
    pipelines = {}
    for name, args in setups.items():
        with Fleet(cfg).start(1, args):
            e2e = end_to_end(api, cfg, n, chunk, timeout_s=max(120.0, n / 50))
        clear_state(cfg)
        ratio = best / e2e["wall_s"]
        pipelines[name] = {**e2e, "worker_args": args, "ratio_inproc_over_pipeline": ratio}
    head = pipelines[next(iter(setups))]
    return {
        "pipeline": head,
        "pipelines": pipelines,
        "inproc_loop_omp_default": base_default,
        "inproc_loop_omp1": base_omp1,
        "ratio_inproc_over_pipeline": head["ratio_inproc_over_pipeline"],
        "target_ratio": 1.0,
    }


def b5(
    api: Api, cfg: BenchConfig, n: int, chunk: int, counts: list[int], worker_args: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "worker_args": worker_args, "by_workers": {}}
    for k in counts:
        with Fleet(cfg).start(k, worker_args):
            out["by_workers"][str(k)] = end_to_end(api, cfg, n, chunk, timeout_s=max(120, n / 50))
        clear_state(cfg)
    one = out["by_workers"][str(counts[0])]["tasks_per_s"]
    out["speedup_vs_1"] = {k: v["tasks_per_s"] / one for k, v in out["by_workers"].items()}
    return out


def b6(api: Api, cfg: BenchConfig, n: int, chunk: int, worker_args: list[str]) -> dict[str, Any]:
    r = redis.Redis.from_url(cfg.redis_url, decode_responses=True)
    before = r.info("memory")["used_memory"]
    with Fleet(cfg).start(1, worker_args):
        e2e = end_to_end(api, cfg, n, chunk, timeout_s=max(300, n / 50))
        time.sleep(1.0)  # let the last acks land
        mem = r.info("memory")
        lengths = {k: r.xlen(k) for k in ("stream:simulate", "stream:events", "stream:dead")}
        groups = r.xinfo_groups("stream:simulate")
    r.close()
    clear_state(cfg)
    return {
        "n": n,
        "pipeline": e2e,
        "used_memory_before_bytes": before,
        "used_memory_bytes": mem["used_memory"],
        "used_memory_peak_bytes": mem["used_memory_peak"],
        "stream_lengths": lengths,
        "pending_simulate": sum(int(g["pending"]) for g in groups),
    }


# ---- B3 ------------------------------------------------------------------------------
HOPS = ("post_s", "post_to_running_s", "running_to_completed_s", "completed_to_client_s")


class LongPoll:
    """Client.wait_for's way: ``GET events?after=…&status=<finished>`` long polls until
    the task's event (so there is no ``running`` timestamp: that hop reads 0)."""

    name = "long_poll"

    def __init__(self, api: Api) -> None:
        self.api = api
        self.cursor = api.events(None, 0)["cursor"]

    def wait(self, tid: str, deadline: float) -> dict[str, float]:
        seen: dict[str, float] = {}
        while "completed" not in seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {tid}: no completed event in time")
            got = self.api.events(self.cursor, 5, "cancelled,completed,failed")
            self.cursor = got["cursor"]
            seen.update((e["status"], e["ts"]) for e in got["events"] if e["task_id"] == tid)
        return seen

    def close(self) -> None:
        pass


class Sse:
    """The live table's way: one ``GET events`` server-sent-events stream, read by a
    thread; each task's events are handed over as they arrive."""

    name = "sse"

    def __init__(self, api: Api) -> None:
        self.seen: dict[str, dict[str, float]] = {}
        self.cond = threading.Condition()
        self.http = httpx.Client(base_url=api.base, headers=api.headers, timeout=None)
        self.ready = threading.Event()
        self.closing = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise TimeoutError("the events stream did not open")

    def _read(self) -> None:
        try:
            self._frames()
        except httpx.HTTPError:
            if not self.closing:
                raise

    def _frames(self) -> None:
        headers = {"Accept": "text/event-stream"}
        with self.http.stream("GET", "events", headers=headers) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                self.ready.set()
                if not line.startswith("data: "):
                    continue
                e = json.loads(line[6:])
                with self.cond:
                    self.seen.setdefault(e["task_id"], {})[e["status"]] = e["ts"]
                    self.cond.notify_all()

    def wait(self, tid: str, deadline: float) -> dict[str, float]:
        with self.cond:
            while "completed" not in self.seen.get(tid, {}):
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"task {tid}: no completed event in time")
            return self.seen.pop(tid)

    def close(self) -> None:
        self.closing = True
        self.http.close()


def _latencies(api: Api, cfg: BenchConfig, n: int, waiter: LongPoll | Sse) -> dict[str, Any]:
    """Submit one task, wait for its completed event; repeat. Besides the latency, each
    task's hops come from the events' own timestamps (one clock: everything runs on this
    machine): the POST, POST answered → ``running`` (worker woke and claimed),
    ``running`` → ``completed`` (job process + writes), ``completed`` → the client."""
    lat: list[float] = []
    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    spec = {**bell_spec(cfg.shots), "enqueue": True}
    for i in range(n + 5):
        t0, w0 = time.perf_counter(), time.time()
        tid = api.post_task(spec)["task_id"]
        w_post = time.time()
        seen = waiter.wait(tid, time.monotonic() + 30)
        t1, w1 = time.perf_counter(), time.time()
        if i >= 5:  # the first few warm the connection pools
            lat.append(t1 - t0)
            running = seen.get("running", w_post)
            hops["post_s"].append(w_post - w0)
            hops["post_to_running_s"].append(running - w_post)
            hops["running_to_completed_s"].append(seen["completed"] - running)
            hops["completed_to_client_s"].append(w1 - seen["completed"])
        time.sleep(0.002)  # an idle worker: let it park in XREADGROUP BLOCK again
    ms = sorted(x * 1000 for x in lat)
    return {
        "n": n,
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "p99_ms": ms[int(0.99 * (len(ms) - 1))],
        "max_ms": ms[-1],
        "hops_p50_ms": {h: statistics.median(v) * 1000 for h, v in hops.items()},
    }


def b3(api: Api, cfg: BenchConfig, n: int, worker_args: list[str]) -> dict[str, Any]:
    """B3 through both ways of getting events, same worker, same run."""
    out: dict[str, Any] = {"n": n, "target_p50_ms": 10, "target_p99_ms": 50}
    with Fleet(cfg).start(1, worker_args):
        for make in (Sse, LongPoll):
            waiter = make(api)
            try:
                out[waiter.name] = _latencies(api, cfg, n, waiter)
            finally:
                waiter.close()
    clear_state(cfg)
    return out


# ---- B4 ------------------------------------------------------------------------------
def big_circuit(n_qubits: int) -> str:
    """Non-Clifford (ry) so Aer's automatic method is statevector on both sides."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n_qubits}];"]
    lines.append(f"creg c[{n_qubits}];")
    for layer in range(2):
        for q in range(n_qubits):
            lines.append(f"ry({0.1 * (q + 1) + layer:.3f}) q[{q}];")
        for q in range(n_qubits - 1):
            lines.append(f"cx q[{q}],q[{q + 1}];")
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def b4(
    api: Api, cfg: BenchConfig, n_qubits: int, worker_args: list[str], reps: int = 3
) -> dict[str, Any]:
    """Best of ``reps`` on each side: one sample of a ~2 s run moved by 10% between runs."""
    qasm = big_circuit(n_qubits)
    base = inproc(1, cfg.shots, qasm, omp=None, reps=reps)
    spec = {
        "task_type": "simulate",
        "payload": {"circuit": qasm, "shots": cfg.shots},
        "enqueue": True,
    }
    walls = []
    with Fleet(cfg).start(1, worker_args):
        for i in range(reps):
            t0 = time.time()
            api.post_task(spec)
            done = wait_finished(cfg, i + 1, timeout_s=600)
            walls.append(done["last_finished_epoch"] - t0)
    with pg(cfg) as conn:
        sims = [r[0].get("simulator_time_s") for r in conn.execute("SELECT meta_data FROM tasks")]
    clear_state(cfg)
    wall = min(walls)
    return {
        "num_qubits": n_qubits,
        "reps": reps,
        "inproc_s": base["wall_s"],
        "inproc_walls_s": base["walls_s"],
        "pipeline_s": wall,
        "pipeline_walls_s": walls,
        "pipeline_simulator_times_s": sims,
        "ratio_inproc_over_pipeline": base["wall_s"] / wall,
        "target_ratio": 0.95,
        "worker_args": worker_args,
    }
