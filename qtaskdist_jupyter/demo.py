"""``qtaskdist demo``: the main job on whatever services the settings name.

With no DATABASE_URL / REDIS_URL this starts the embedded PostgreSQL + Valkey, migrates,
starts a local worker process, submits a Bell circuit, waits for it and prints the task
table and the counts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from .config import Settings
from .errors import WaitTimeout

BELL = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""


def start_worker(
    settings: Settings, *, name: str, extra: list[str] | None = None
) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "qtaskdist_worker", "--name", name, *(extra or [])], env=env
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'task_id':<10} {'type':<14} {'status':<10} {'attempt':>7} {'worker':<14} {'run_s':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        prof = r.get("meta_data") or {}
        run = prof.get("run_time_s")
        lines.append(
            f"{str(r['task_id'])[:8]:<10} {r['task_type']:<14} {r['status']:<10} "
            f"{r['attempt']:>7} {str(r.get('worker') or '-')[:14]:<14} "
            f"{(f'{run:.3f}' if isinstance(run, int | float) else '-'):>7}"
        )
    return "\n".join(lines)


async def _submit_and_wait(settings: Settings, timeout_s: float) -> dict[str, Any]:
    from .schemas import TaskCreate
    from .service import TaskService

    svc = TaskService.from_settings(settings)
    try:
        spec = TaskCreate(
            task_type="simulate", payload={"circuit": BELL, "shots": 1000, "seed": 7}, name="bell"
        )
        (row,) = await svc.create(
            [svc.to_new_task(spec, owner=os.environ.get("USER", "demo"))], enqueue=True
        )
        deadline = time.monotonic() + timeout_s
        while True:
            got = await svc.store.get(row["task_id"])
            if got["status"] in ("completed", "failed", "cancelled"):
                return got
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"task {row['task_id']} still {got['status']} after {timeout_s} s"
                )
            await asyncio.sleep(0.1)
    finally:
        await svc.close()


def run_demo(settings: Settings, *, timeout_s: float = 120.0) -> int:
    from .embedded import resolve_settings
    from .migrate import upgrade

    settings = resolve_settings(settings)
    print(f"database: {settings.database_url}\nredis:    {settings.redis_url}", flush=True)
    upgrade(settings.database_url)
    worker = start_worker(settings, name="demo-worker")
    try:
        row = asyncio.run(_submit_and_wait(settings, timeout_s))
    finally:
        worker.terminate()
        worker.wait(30)
    print()
    print(format_table([row]))
    print()
    if row["status"] != "completed":
        print(f"task {row['status']}: {row.get('error')}", file=sys.stderr)
        return 1
    counts = row["result"]["counts"]
    print("counts:", dict(sorted(counts.items())))
    return 0
