"""B2 by workload and B7: what users send, end to end, against the same work in-process.

Each case submits its tasks through the REST API (``tasks/batch`` in chunks of 1,000, one
batch id) to one worker with its defaults (every task type, one job process per usable
core), takes the time from the first POST to the last ``finished_at``, checks every
answer against the in-process run, and divides: ``ratio = in-process wall / pipeline
wall`` (above 1: the pipeline is faster than the user's own loop).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from . import workloads
from .cases import wait_finished
from .distinct import CpuMeter, process_groups
from .env import ROOT, BenchConfig, Fleet, clear_state, pg

# The worker as a user starts it: no flags. (Fleet names the stream types itself, so
# every type is passed explicitly, which is what no flag means.)
DEFAULT_WORKER = ["--task-types", "simulate,c_qir_convert,backend_run"]
SUBMIT_CHUNK = 1000


def inproc(workload: str, n: int, *, reps: int = 1) -> dict[str, Any]:
    """The in-process baseline, the faster of OpenMP's default and ``OMP_NUM_THREADS=1``."""
    import os

    best: dict[str, Any] | None = None
    for omp in (None, "1"):
        env = dict(os.environ)
        env.pop("OMP_NUM_THREADS", None)
        if omp is not None:
            env["OMP_NUM_THREADS"] = omp
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out_path = Path(f.name)
        cmd = [sys.executable, "-m", "benchmarks.workloads", workload, "--n", str(n)]
        cmd += ["--reps", str(reps), "--out", str(out_path)]
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"in-process {workload} failed: {done.stderr[-2000:]}")
        got = json.loads(out_path.read_text())
        out_path.unlink()
        if best is None or got["wall_s"] < best["wall_s"]:
            best = got
    assert best is not None
    return best


def _submit(api: Any, specs: list[dict[str, Any]]) -> float:
    """POST the specs as one batch id in chunks; returns the wall time of the first POST."""
    batch_id = str(uuid.uuid4())
    t0 = time.time()
    for k in range(0, len(specs), SUBMIT_CHUNK):
        body = {"tasks": specs[k : k + SUBMIT_CHUNK], "enqueue": True, "batch_id": batch_id}
        api.post_batch(json.dumps(body).encode())
    return t0


def _finished_rows(cfg: BenchConfig, n: int, timeout_s: float) -> list[tuple[Any, ...]]:
    wait_finished(cfg, n, timeout_s)
    with pg(cfg) as conn:
        return conn.execute(
            "SELECT task_type, status, payload, result, error,"
            " extract(epoch FROM finished_at)::float8, extract(epoch FROM started_at)::float8,"
            " meta_data FROM tasks ORDER BY finished_at"
        ).fetchall()


def _pipeline(
    api: Any, cfg: BenchConfig, specs: list[dict[str, Any]], worker_args: list[str]
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    n = len(specs)
    with Fleet(cfg).start(1, worker_args) as fleet:
        meter = CpuMeter(process_groups(cfg, api.server_pid, fleet.procs[0].pid))
        t0 = _submit(api, specs)
        submitted = time.time() - t0
        rows = _finished_rows(cfg, n, timeout_s=max(300.0, n / 20))
        cpu = meter.per_task_us(n)
    clear_state(cfg)
    bad = [r for r in rows if r[1] != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {n} tasks did not complete; first: {bad[0][4]}")
    finished = [r[5] for r in rows]
    wall = finished[-1] - t0
    gaps = [b - a for a, b in zip(finished, finished[1:], strict=False)]
    return {
        "n": n,
        "submit_s": submitted,
        "wall_s": wall,
        "tasks_per_s": n / wall,
        "largest_finish_gap_ms": max(gaps, default=0.0) * 1000,
        "worker_args": worker_args,
        "cpu_us_per_task": cpu,
    }, rows


def _check(workload: str, rows: list[tuple[Any, ...]], base: dict[str, Any]) -> dict[str, Any]:
    """Every answer against the in-process one: counts exactly, expectation values to 1e-9."""
    n = len(base["answers"])
    by_seed: dict[int, Any] = {}
    converts = 0
    for task_type, _s, payload, result, _e, _f, _st, _m in rows:
        if task_type == "c_qir_convert":
            converts += bool(result.get("bitcode_base64"))
        else:
            by_seed[payload["seed"]] = result
    mismatches = 0
    for i in range(n):
        kind = workloads.kind_of(workload, i)
        if kind.startswith("convert"):
            continue
        got = by_seed.get(i)
        want = base["answers"][i]
        if kind == "seeded":
            mismatches += got is None or got["counts"] != want
        else:
            vals = got["results"][0]["expectation_values"] if got else None
            mismatches += vals is None or not _close(vals, want)
    expected_converts = sum(workloads.kind_of(workload, i).startswith("convert") for i in range(n))
    if mismatches or converts != expected_converts:
        raise RuntimeError(
            f"{workload}: {mismatches} answers differ from in-process, "
            f"{converts}/{expected_converts} modules"
        )
    return {"answers_equal_inproc": n - expected_converts, "modules": converts}


def _close(got: list[float], want: list[float], tol: float = 1e-9) -> bool:
    return len(got) == len(want) and all(abs(a - b) <= tol for a, b in zip(got, want, strict=True))


def b2_workload(api: Any, cfg: BenchConfig, workload: str, n: int) -> dict[str, Any]:
    base = inproc(workload, n)
    pipe, rows = _pipeline(api, cfg, workloads.specs(workload, n), DEFAULT_WORKER)
    out: dict[str, Any] = {
        "workload": workload,
        "pipeline": pipe,
        "inproc_loop": {k: v for k, v in base.items() if k != "answers"},
        "ratio_inproc_over_pipeline": base["wall_s"] / pipe["wall_s"],
        **_check(workload, rows, base),
    }
    if workload.startswith("convert"):
        # The worker's own conversion in one process: what the pipeline adds to it.
        own = inproc("own-" + workload, n)
        out["inproc_own_convert"] = {k: v for k, v in own.items() if k != "answers"}
        out["ratio_own_convert_over_pipeline"] = own["wall_s"] / pipe["wall_s"]
    return out


def b7_sweep(
    api: Any, cfg: BenchConfig, n_points: int, chunk: int, reps: int = 3
) -> dict[str, Any]:
    """A sweep of n_points with 4 Pauli terms: one task, and tasks of ``chunk`` points,
    against ONE in-process ``run(..., parameter_binds=...)``. Both sides are timed
    ``reps`` times and compared best against best (each pipeline run on a fresh worker):
    a single run of a quarter-second task is mostly this machine's noise."""
    base = inproc("sweep", n_points, reps=reps)
    out: dict[str, Any] = {
        "n_points": n_points,
        "inproc_batched_call": {k: v for k, v in base.items() if k != "answers"},
    }
    for name, size in (("one_task", n_points), (f"chunk_{chunk}", chunk)):
        runs = []
        for _ in range(reps):
            specs = workloads.sweep_specs(n_points, size)
            pipe, rows = _pipeline(api, cfg, specs, DEFAULT_WORKER)
            values = [p["expectation_values"] for r in rows_by_first_point(rows) for p in r]
            if len(values) != n_points:
                raise RuntimeError(f"B7 {name}: {len(values)} points back, not {n_points}")
            off = sum(not _close(v, w) for v, w in zip(values, base["answers"], strict=True))
            if off:
                raise RuntimeError(f"B7 {name}: {off} points differ from the in-process call")
            # Where the time went: Aer's own time per task, and the threads it had.
            metas = [r[7] for r in rows]
            pipe["simulator_time_s"] = [m.get("simulator_time_s") for m in metas]
            pipe["aer_threads"] = [m.get("aer_threads") for m in metas]
            runs.append(pipe)
        best = min(runs, key=lambda p: p["wall_s"])
        out[name] = {
            **best,
            "walls_s": [p["wall_s"] for p in runs],
            "ratio_inproc_over_pipeline": base["wall_s"] / best["wall_s"],
        }
    return out


def rows_by_first_point(rows: list[tuple[Any, ...]]) -> list[list[dict[str, Any]]]:
    """Each sweep task's per-point results, in the order of the sweep."""
    ordered = sorted(rows, key=lambda r: r[2]["parameter_bindings"][0]["theta"])
    return [r[3]["results"] for r in ordered]
