"""CPU per task, by process: where a workload's work goes, measured with psutil.

``python -m benchmarks.cpu seeded|observables|plain [--n N] [--db-name …] [--redis-url …]``
starts a server and one worker with its defaults (as B2-SEEDED does), submits N tasks of
the workload and prints the CPU time of each process per task: the worker's main process,
its job processes, the server, this database's PostgreSQL backends and, when the Redis
URL is a server of its own (not shared), Redis. CPU time moves far less than wall time on
a shared machine, so this is the number to compare between two versions of the code.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from . import workloads
from .cases import Api, wait_finished
from .env import BenchConfig, Fleet, clear_state, pg, reset_database, start_server
from .users import DEFAULT_WORKER, SUBMIT_CHUNK

WORKLOADS = {
    "seeded": lambda n: workloads.specs("seeded", n),
    "observables": lambda n: workloads.specs("observables", n),
    "plain": lambda n: (
        [{"task_type": "simulate", "payload": {"circuit": workloads.BELL2, "shots": 100}}] * n
    ),
}


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _groups(cfg: BenchConfig, server_pid: int, worker_pid: int) -> dict[str, list[int]]:
    worker = psutil.Process(worker_pid)
    with pg(cfg) as conn:
        backends = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (cfg.db_name,),
            ).fetchall()
        ]
    r = redis.Redis.from_url(cfg.redis_url)
    redis_pid = int(r.info("server")["process_id"])
    r.close()
    return {
        "worker main": [worker_pid],
        "job processes": [c.pid for c in worker.children()],
        "server": [server_pid],
        "postgres (this db)": backends,
        "redis": [redis_pid],
    }


def measure(cfg: BenchConfig, workload: str, n: int) -> dict[str, Any]:
    reset_database(cfg)
    root = Path(tempfile.mkdtemp(prefix="qtd-cpu-"))
    server = start_server(cfg, root)
    api = Api(server.url, server.token)
    try:
        clear_state(cfg)
        specs = WORKLOADS[workload](n)
        with Fleet(cfg).start(1, DEFAULT_WORKER) as fleet:
            assert server.proc is not None
            # A first small batch opens the connections whose backends are counted.
            warm = WORKLOADS[workload](50)
            api.post_batch(json.dumps({"tasks": warm, "enqueue": True}).encode())
            wait_finished(cfg, 50, 60)
            groups = _groups(cfg, server.proc.pid, fleet.procs[0].pid)
            before = {k: _cpu(v) for k, v in groups.items()}
            t0 = time.time()
            for k in range(0, n, SUBMIT_CHUNK):
                body = {"tasks": specs[k : k + SUBMIT_CHUNK], "enqueue": True}
                api.post_batch(json.dumps(body).encode())
            done = wait_finished(cfg, n + 50, max(300.0, n / 20))
            wall = done["last_finished_epoch"] - t0
            after = {k: _cpu(v) for k, v in groups.items()}
        clear_state(cfg)
    finally:
        server.stop()
    per_task = {k: (after[k] - before[k]) / n * 1e6 for k in groups}
    return {"workload": workload, "n": n, "wall_s": wall, "cpu_us_per_task": per_task}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cpu")
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--db-name", default="qtd_bench_cpu")
    ap.add_argument("--redis-url", default=BenchConfig.redis_url)
    args = ap.parse_args(argv)
    cfg = BenchConfig(db_name=args.db_name, redis_url=args.redis_url)
    out = measure(cfg, args.workload, args.n)
    print(f"{out['workload']}: {out['n']} tasks, wall {out['wall_s']:.2f} s")
    for k, v in out["cpu_us_per_task"].items():
        print(f"  {k:20s} {v:8.0f} us/task")
    print(f"  {'total':20s} {sum(out['cpu_us_per_task'].values()):8.0f} us/task")
    return 0


if __name__ == "__main__":
    sys.exit(main())
