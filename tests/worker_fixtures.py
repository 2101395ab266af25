"""Helpers for the worker tests: submit tasks, run real worker processes, wait for rows."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qtaskdist_jupyter.core.config import Settings
from qtaskdist_jupyter.core.schemas import validate_payload
from qtaskdist_jupyter.core.store.store import NewTask

ROOT = Path(__file__).resolve().parents[1]
# Short timings so crash / retry tests finish in seconds.
FAST = [
    # One job process unless a test asks for more: the default (one per core) would
    # start extra Aer processes in every test on a many-core machine.
    "--concurrency", "1",
    "--visibility-timeout-s", "1.5",
    "--reconcile-interval-s", "1",
    "--retry-base-s", "0.2",
    "--retry-cap-s", "1",
    "--poll-interval-s", "0.1",
    "--grace-s", "10",
]  # fmt: skip


def worker_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QBRAID_", "QTASKDIST_"))}
    env.update(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def worker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "qtaskdist_worker", *FAST, *args]


def run_worker(
    settings: Settings, *args: str, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A real worker process in --burst mode, run to completion."""
    proc = subprocess.run(
        worker_cmd("--burst", *args),
        env=worker_env(settings, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc


def start_worker(
    settings: Settings, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[str]:
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        worker_cmd(*args),
        env=worker_env(settings, env),
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the worker and its job processes (a crashed machine loses them all)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


async def submit(
    service: Any,
    task_type: str,
    payloads: list[dict[str, Any]],
    *,
    max_retries: int = 3,
    owner: str = "alice",
) -> list[uuid.UUID]:
    """Insert and enqueue tasks as the server does (validated payloads)."""
    new = [
        NewTask(
            task_type=task_type,
            payload=validate_payload(task_type, p, service.settings.limits),
            owner=owner,
            max_retries=max_retries,
        )
        for p in payloads
    ]
    rows = await service.create(new, enqueue=True)
    return [r["task_id"] for r in rows]


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 30, every: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


async def rows(service: Any, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    got = {r["task_id"]: r for r in await service.store.get_many(ids)}
    return [got[i] for i in ids]


def completion_events(sync_redis: Any, task_id: uuid.UUID) -> list[dict[str, Any]]:
    import json

    out = []
    for _eid, fields in sync_redis.xrange("stream:events"):
        ev = json.loads(fields["m"])
        if ev["task_id"] == str(task_id) and ev["status"] == "completed":
            out.append(ev)
    return out


# A QASM 3 program whose loop never ends: Aer runs it until the job process is killed.
FOREVER_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[1] q;
bit[1] c;
bit[1] d;
c[0] = measure q[0];
while (c[0] == false) { x q[0]; x q[0]; }
d[0] = measure q[0];
"""


def heavy_qasm(layers: int, n: int = 20) -> str:
    """A 20-qubit statevector circuit that takes about 0.18 s per layer on one core."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];"]
    for layer in range(layers):
        lines += [f"rx(0.{layer + 1}) q[{i}];" for i in range(n)]
        lines += [f"cx q[{i}],q[{i + 1}];" for i in range(n - 1)]
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def heavy_payload(layers: int = 16, **kw: Any) -> dict[str, Any]:
    return {"circuit": heavy_qasm(layers), "shots": 10, "method": "statevector", "seed": 1, **kw}
