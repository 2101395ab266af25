"""PostgreSQL storage per 10,000 small tasks, through the real pipeline.

``flock /tmp/qtd-heavy.lock .venv/bin/python -m benchmarks.storage [--n 10000]``

Drops and recreates the database ``qtd_bench_storage``, uses (and flushes) Redis DB 14,
submits ``--n`` Bell tasks (100 shots) with TaskService as the server does, runs them on one
real worker, then reports the tasks table's size (heap, TOAST, indexes) after VACUUM, per
10,000 completed tasks; plus one 20-qubit statevector task, to show what a large result
costs out of the row. Writes ``benchmarks/results/storage-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import redis

from qtaskdist_jupyter.core.config import Limits, Settings, normalize_database_url
from qtaskdist_jupyter.core.schemas import TaskCreate

from .env import BELL, ROOT, BenchConfig, Fleet, machine_info, pg, reset_database

SIZES = """
SELECT pg_relation_size('tasks') AS heap,
       pg_total_relation_size('tasks') - pg_relation_size('tasks')
         - pg_indexes_size('tasks') AS toast,
       pg_indexes_size('tasks') AS indexes,
       pg_total_relation_size('tasks') AS total,
       pg_total_relation_size('task_result_chunks') AS chunks,
       (SELECT avg(pg_column_size(t.*)) FROM tasks t) AS avg_row,
       (SELECT avg(pg_column_size(t.result)) FROM tasks t) AS avg_result,
       (SELECT avg(pg_column_size(t.meta_data)) FROM tasks t) AS avg_meta,
       (SELECT avg(pg_column_size(t.payload)) FROM tasks t) AS avg_payload
"""


def sv_qasm(n: int) -> str:
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];"]
    lines += [f"h q[{i}];" for i in range(n)]
    lines += [f"rz({0.1 * (i + 1):.3f}) q[{i}];" for i in range(n)]
    return "\n".join(lines) + "\n"


async def submit(cfg: BenchConfig, specs: list[dict[str, Any]]) -> None:
    from qtaskdist_server.api.service import TaskService

    settings = Settings(
        database_url=normalize_database_url(cfg.database_url),
        redis_url=cfg.redis_url,
        limits=Limits(),
    )
    svc = TaskService.from_settings(settings)
    try:
        memo: dict[str, Any] = {}
        new = [svc.checks.new_task(TaskCreate.model_validate(s), "bench", memo=memo) for s in specs]
        for i in range(0, len(new), 2000):
            await svc.create(new[i : i + 2000], enqueue=True)
    finally:
        await svc.close()


def wait_done(cfg: BenchConfig, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with pg(cfg) as c:
        while True:
            (done,) = c.execute(
                "SELECT count(*) FROM tasks WHERE status IN ('completed', 'failed')"
            ).fetchone()
            if done >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {n} tasks finished after {timeout_s} s")
            time.sleep(0.5)


def sizes(cfg: BenchConfig) -> dict[str, float]:
    with pg(cfg) as c:
        c.execute("VACUUM ANALYZE tasks")
        c.execute("VACUUM ANALYZE task_result_chunks")
        cur = c.execute(SIZES)
        row = cur.fetchone()
        return {d.name: float(v or 0) for d, v in zip(cur.description, row, strict=True)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--db-name", default="qtd_bench_storage")
    args = ap.parse_args()
    cfg = BenchConfig(db_name=args.db_name)
    reset_database(cfg)
    r = redis.Redis.from_url(cfg.redis_url)
    r.flushdb()
    small = {"task_type": "simulate", "payload": {"circuit": BELL, "shots": 100}}
    big = {"task_type": "simulate",
           "payload": {"circuit": sv_qasm(20), "shots": 1, "statevector": True}}  # fmt: skip
    with Fleet(cfg).start(1, ["--concurrency", "1"]):
        asyncio.run(submit(cfg, [small] * args.n))
        wait_done(cfg, args.n, timeout_s=600)
        small_sizes = sizes(cfg)
        asyncio.run(submit(cfg, [big]))
        wait_done(cfg, args.n + 1, timeout_s=300)
        with pg(cfg) as c:
            ref, row_bytes, result_bytes = c.execute(
                "SELECT result->'statevector', pg_column_size(t.*), pg_column_size(t.result) "
                "FROM tasks t WHERE result ? 'statevector'"
            ).fetchone()
        big_sizes = sizes(cfg)
    r.flushdb()
    r.close()
    per10k = 10_000 / args.n
    out = {
        "n": args.n,
        "per_10k_tasks_mib": {
            k: round(small_sizes[k] * per10k / 2**20, 2)
            for k in ("heap", "toast", "indexes", "total")
        },
        "avg_bytes": {k: round(small_sizes[k]) for k in small_sizes if k.startswith("avg_")},
        "statevector_20q": {
            "nbytes": ref["nbytes"],
            "stored_bytes": ref["stored_bytes"],
            "chunks_table_mib": round(big_sizes["chunks"] / 2**20, 2),
            "row_bytes": row_bytes,
            "result_bytes": result_bytes,
        },
        "machine": machine_info(),
    }
    print(json.dumps(out, indent=1))
    results = ROOT / "benchmarks" / "results" / "storage-latest.json"
    results.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
