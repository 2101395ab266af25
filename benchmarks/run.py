"""``python -m benchmarks [--quick] [--only B1,B3]``: run B1–B6 and FS, print a table, write JSON.

Results go to ``benchmarks/results/<UTC timestamp>.json`` and ``benchmarks/results/latest.json``
(a ``--only`` subset: ``<UTC timestamp>-only-<names>.json`` alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qtaskdist_worker.worker import default_concurrency

from . import cases, distinct, fairshare, hub, users
from .env import BenchConfig, machine_info, reset_database, start_server

RESULTS = Path(__file__).resolve().parent / "results"

# N per benchmark: (full, quick)
SIZES = {
    "B1": (10_000, 2_000),
    "B1_single": (2_000, 200),
    "B2": (10_000, 1_000),
    "B3": (500, 50),
    "B3-HUB": (500, 50),
    "B4": (24, 20),
    "B5": (5_000, 500),
    "B6": (100_000, 5_000),
    "B2-SEEDED": (5_000, 500),
    "B2-CONVERT": (1_000, 100),
    "B2-CONVERT-EXEC": (300, 50),
    "B2-CONVERT-DISTINCT": (1_000, 100),
    "B2-CONVERT-DISTINCT-EXEC": (300, 50),
    "B2-DISTINCT": (2_000, 200),
    "B2-DISTINCT-TEXT": (5_000, 500),
    "B2-OBS": (2_000, 300),
    "B2-MIXED": (3_000, 300),
    "B7": (1_000, 200),
    "FS": (20_000, 2_000),
}
B7_CHUNK = 50


def worker_args(threads: int) -> list[str]:
    # One job process per worker with one OpenMP thread: tiny circuits gain nothing from
    # more threads, and idle OpenMP threads would spin on the cores the others need.
    return ["--concurrency", "1", "--threads-per-job", str(threads)]


def run(only: set[str], quick: bool, cfg: BenchConfig, chunk: int) -> dict[str, Any]:
    size = {k: v[1] if quick else v[0] for k, v in SIZES.items()}
    cores = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "quick": quick,
        "machine": machine_info(),
        "config": {
            "shots": cfg.shots,
            "submit_chunk": chunk,
            "redis_url": cfg.redis_url,
            "database": cfg.db_name,
            "sizes": size,
        },  # fmt: skip
        "results": {},
    }
    reset_database(cfg)
    root = Path(tempfile.mkdtemp(prefix="qtd-bench-"))
    server = start_server(cfg, root)
    api = cases.Api(server.url, server.token)
    api.server_pid = server.proc.pid if server.proc is not None else None
    res = out["results"]
    try:
        cases.clear_state(cfg)
        steps = [
            ("B1", lambda: cases.b1(api, cfg, size["B1"], size["B1_single"])),
            ("B3", lambda: cases.b3(api, cfg, size["B3"], worker_args(1))),
            # The same through a JupyterHub's proxy and the shared qtaskdist service.
            ("B3-HUB", lambda: hub.b3_hub(cfg, size["B3-HUB"], worker_args(1))),
            # The worker's defaults (one job process per core, at most 4), then one.
            (
                "B2",
                lambda: cases.b2(
                    api,
                    cfg,
                    size["B2"],
                    chunk,
                    {
                        f"default (--concurrency {default_concurrency()})": [],
                        "--concurrency 1": worker_args(1),
                    },
                ),
            ),  # fmt: skip
            ("B5", lambda: cases.b5(api, cfg, size["B5"], chunk, [1, 2, 4], worker_args(1))),
            # One big circuit: the job process may use every core, as in-process Aer does.
            ("B4", lambda: cases.b4(api, cfg, size["B4"], worker_args(cores))),
            ("B6", lambda: cases.b6(api, cfg, size["B6"], chunk, worker_args(1))),
            # What users send (issue 12), each against its own in-process loop.
            ("B2-SEEDED", lambda: users.b2_workload(api, cfg, "seeded", size["B2-SEEDED"])),
            ("B2-CONVERT", lambda: users.b2_workload(api, cfg, "convert", size["B2-CONVERT"])),
            (
                "B2-CONVERT-EXEC",
                lambda: users.b2_workload(api, cfg, "convert-exec", size["B2-CONVERT-EXEC"]),
            ),
            (
                "B2-CONVERT-DISTINCT",
                lambda: users.b2_workload(
                    api, cfg, "convert-distinct", size["B2-CONVERT-DISTINCT"]
                ),
            ),
            (
                "B2-CONVERT-DISTINCT-EXEC",
                lambda: users.b2_workload(
                    api, cfg, "convert-distinct-exec", size["B2-CONVERT-DISTINCT-EXEC"]
                ),
            ),
            # What notebooks send: a different circuit per point (issue 24).
            (
                "B2-DISTINCT",
                lambda: distinct.case(
                    api, cfg, "distinct", size["B2-DISTINCT"], users.DEFAULT_WORKER
                ),
            ),
            (
                "B2-DISTINCT-TEXT",
                lambda: distinct.case(
                    api, cfg, "distinct-text", size["B2-DISTINCT-TEXT"], users.DEFAULT_WORKER
                ),
            ),
            ("B2-OBS", lambda: users.b2_workload(api, cfg, "observables", size["B2-OBS"])),
            ("B2-MIXED", lambda: users.b2_workload(api, cfg, "mixed", size["B2-MIXED"])),
            ("B7", lambda: users.b7_sweep(api, cfg, size["B7"], B7_CHUNK)),
            # Fair share starts its own two-user servers (benchmarks/fairshare.py).
            ("FS", lambda: fairshare.case(cfg, size["FS"])),
        ]
        for name, fn in steps:
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            print(f"[bench] {name} ...", flush=True)
            res[name] = fn()
            res[name]["bench_wall_s"] = round(time.perf_counter() - t0, 2)
    finally:
        api.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    out["finished"] = datetime.now(UTC).isoformat()
    return out


def table(out: dict[str, Any]) -> str:
    r = out["results"]
    rows: list[tuple[str, str, str, str]] = []
    if "B1" in r:
        b = r["B1"]
        rows.append(
            (
                "B1",
                f"submit {b['bulk']['n']} bulk",
                f"{b['bulk']['tasks_per_s']:,.0f} tasks/s",
                "≥ 20,000 tasks/s",
            )
        )
        pt = b["per_task"]
        rows.append(("B1", f"submit {pt['n']} per-task REST (c={pt['concurrency']})",
                     f"{b['per_task']['tasks_per_s']:,.0f} tasks/s",
                     f"bulk/per-task = {b['ratio_bulk_over_per_task']:.1f}x"))  # fmt: skip
    if "B2" in r:
        b = r["B2"]
        for name, p in b["pipelines"].items():
            ratio = p["ratio_inproc_over_pipeline"]
            rows.append(("B2", f"e2e {p['n']} Bell/100 shots, 1 worker, {name}",
                         f"{p['wall_s']:.2f} s ({p['tasks_per_s']:,.0f}/s)",
                         f"in-proc/pipeline = {ratio:.2f} (≥ 1.0)"))  # fmt: skip
        rows.append(("B2", "in-process loop (OMP unset | OMP=1)",
                     f"{b['inproc_loop_omp_default']['wall_s']:.2f} | "
                     f"{b['inproc_loop_omp1']['wall_s']:.2f} s", ""))  # fmt: skip
    if "B3" in r:
        b = r["B3"]
        for way, label in (("sse", "SSE (live table)"), ("long_poll", "long poll (wait)")):
            w = b[way]
            rows.append(("B3", f"submit→completed, {label}, {b['n']}",
                         f"p50 {w['p50_ms']:.1f} / p99 {w['p99_ms']:.1f} ms",
                         "p50 ≤ 10, p99 ≤ 50 ms"))  # fmt: skip
    rows += hub.ratio_rows(r)
    if "B4" in r:
        b = r["B4"]
        rows.append(
            (
                "B4",
                f"one {b['num_qubits']}-qubit circuit",
                f"pipeline {b['pipeline_s']:.2f} s, in-proc {b['inproc_s']:.2f} s",
                f"in-proc/pipeline = {b['ratio_inproc_over_pipeline']:.2f} (≥ 0.95)",
            )
        )
    if "B5" in r:
        b = r["B5"]
        for k, v in b["by_workers"].items():
            rows.append(("B5", f"{b['n']} tasks, {k} worker process(es)",
                         f"{v['tasks_per_s']:,.0f} tasks/s",
                         f"x{b['speedup_vs_1'][k]:.2f} vs 1"))  # fmt: skip
    if "B6" in r:
        b = r["B6"]
        sl = b["stream_lengths"]
        rows.append(("B6", f"after {b['n']:,} tasks",
                     f"Redis {b['used_memory_bytes'] / 2**20:.1f} MiB "
                     f"(peak {b['used_memory_peak_bytes'] / 2**20:.1f})",
                     f"XLEN simulate {sl['stream:simulate']}, events {sl['stream:events']}, "
                     f"pending {b['pending_simulate']}"))  # fmt: skip
    rows += user_rows(r)
    if "FS" in r:
        b = r["FS"]
        for way in ("priority_streams", "one_stream"):
            v = b[way]
            what = f"A's 1 task after B's {b['n']:,}, 1 worker, {way}"
            behind = f"behind {v['b_finished_before_a']:,}"
            rows.append(("FS", what, f"{v['a_latency_s']:.3f} s", behind))
    widths = [max(len(x[i]) for x in rows) for i in range(4)] if rows else [0] * 4
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(lines)


TARGETS = {
    "B2-SEEDED": 2.0,
    "B2-CONVERT": 1.5,
    "B2-CONVERT-EXEC": None,
    "B2-CONVERT-DISTINCT": 1.0,
    "B2-CONVERT-DISTINCT-EXEC": None,
    "B2-DISTINCT": 1.3,
    "B2-DISTINCT-TEXT": 1.3,
    "B2-OBS": 1.5,
    "B2-MIXED": 1.2,
}


def user_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, target in TARGETS.items():
        if name not in r:
            continue
        b = r[name]
        p = b["pipeline"]
        loop_s = b["inproc_loop"]["wall_s"]
        ratio = b["ratio_inproc_over_pipeline"]
        goal = f" (≥ {target})" if target else ""
        gap = p.get("largest_finish_gap_ms")
        rows.append((name, f"{p['n']} {b['workload']} tasks, 1 worker, defaults",
                     f"{p['wall_s']:.2f} s ({p['tasks_per_s']:,.0f}/s), loop {loop_s:.2f} s"
                     + (f", max gap {gap:.0f} ms" if gap is not None else ""),
                     f"in-proc/pipeline = {ratio:.2f}{goal}"))  # fmt: skip
        cpu = b.get("cpu_us_per_task") or p.get("cpu_us_per_task")
        if cpu:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items() if k != "total")
            rows.append((name, "  CPU µs per task by process", parts, f"total {cpu['total']:.0f}"))
        if "ratio_own_convert_over_pipeline" in b:
            own = b["inproc_own_convert"]["wall_s"]
            own_ratio = b["ratio_own_convert_over_pipeline"]
            each, loop_each = own / p["n"] * 1e3, loop_s / p["n"] * 1e3
            rows.append((name, "  the worker's own conversion in one process, no repeats",
                         f"{own:.2f} s ({each:.2f} ms each, loop {loop_each:.2f} ms)",
                         f"own/pipeline = {own_ratio:.2f}"))  # fmt: skip
    if "B7" in r:
        b = r["B7"]
        for key, v in b.items():
            if key.startswith(("one_task", "chunk_")):
                aer_s = sum(t or 0.0 for t in v.get("simulator_time_s", []))
                walls = "/".join(f"{w:.2f}" for w in v.get("walls_s", [v["wall_s"]]))
                rows.append(("B7", f"sweep of {b['n_points']} points, {key}, best of 3",
                             f"{walls} s (Aer {aer_s:.2f} s), batched call "
                             f"{b['inproc_batched_call']['wall_s']:.2f} s",
                             f"in-proc/pipeline = {v['ratio_inproc_over_pipeline']:.2f}"
                             + (" (≥ 0.8)" if key == "one_task" else "")))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller N (under 2 minutes)")
    ap.add_argument("--only", default="", help="comma-separated subset, e.g. B1,B3")
    ap.add_argument("--db-name", default=BenchConfig.db_name)
    ap.add_argument("--redis-url", default=BenchConfig.redis_url)
    ap.add_argument("--chunk", type=int, default=2000, help="tasks per batch request in B2/5/6")
    ap.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    args = ap.parse_args(argv)
    cfg = BenchConfig(db_name=args.db_name, redis_url=args.redis_url)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    out = run(only, args.quick, cfg, args.chunk)
    print(table(out))
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        text = json.dumps(out, indent=2, default=str)
        # A subset (--only) gets a file of its own and leaves latest.json to full runs.
        subset = f"-only-{'+'.join(sorted(only))}" if only else ""
        path = RESULTS / f"{stamp}{'-quick' if args.quick else ''}{subset}.json"
        path.write_text(text)
        if not only:
            (RESULTS / "latest.json").write_text(text)
        print(f"[bench] wrote {path}")
    return 0
