"""Fair share: user B queues N tasks, then user A submits one; one worker.

How long A's single task takes from its POST to ``completed``, with the priority streams
(small submissions are read first; the default) and without them
(``QTASKDIST_PRIORITY_MAX_TASKS=0``: every task on the one stream per type), measured
in the same run. Two real users through the REST API: the server runs with
:class:`TwoUsers`, the benchmark's two-token identity.

    flock /tmp/qtd-heavy.lock .venv/bin/python -m benchmarks.fairshare [--n 20000]

It is also registered as ``FS`` in ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User

from devtools.launcher import ServerProcess

from .cases import Api, bell_spec, submit
from .env import ROOT, BenchConfig, Fleet, clear_state, pg, reset_database, service_env

TOKEN_B_ENV = "QTD_FAIRSHARE_TOKEN_B"
# One job process with one thread, as B3, B5 and B6 run theirs.
WORKER_ARGS = ["--concurrency", "1", "--threads-per-job", "1"]


class TwoUsers(IdentityProvider):
    """The server's token is user "a"; the token in QTD_FAIRSHARE_TOKEN_B is user "b"."""

    async def get_user(self, handler: Any) -> User | None:  # type: ignore[override]
        token = self.get_token(handler)
        name = {self.token: "a", os.environ.get(TOKEN_B_ENV): "b"}.get(token) if token else None
        if name is None:
            return None
        handler._token_authenticated = True
        return User(name)


def _start(cfg: BenchConfig, root: Path, priority_max_tasks: int, token_b: str) -> ServerProcess:
    env = {
        **service_env(cfg),
        "QTASKDIST_LOCAL_WORKERS": "0",
        "QTASKDIST_HOME": str(root / "home"),
        "QTASKDIST_PRIORITY_MAX_TASKS": str(priority_max_tasks),
        "QTASKDIST_MAX_ACTIVE_TASKS": "10000000",
        TOKEN_B_ENV: token_b,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    args = [
        "--ServerApp.log_level=WARN",
        "--allow-root",
        "--ServerApp.identity_provider_class=benchmarks.fairshare.TwoUsers",
        "--QtaskdistApp.owner_from=username",
    ]
    return ServerProcess(root, env=env, extra_args=args).start()


def _wait(cfg: BenchConfig, task_id: str, timeout_s: float) -> tuple[float, int]:
    """A's latency (finished_at - created_at, s) and how many of B's finished before it."""
    deadline = time.monotonic() + timeout_s
    with pg(cfg) as conn:
        while True:
            row = conn.execute(
                "SELECT status, extract(epoch FROM finished_at - created_at), finished_at"
                " FROM tasks WHERE task_id = %s",
                (task_id,),
            ).fetchone()
            if row and row[0] == "completed":
                ahead = conn.execute(
                    "SELECT count(*) FROM tasks WHERE owner = 'b' AND finished_at < %s",
                    (row[2],),
                ).fetchone()[0]
                return float(row[1]), int(ahead)
            if row and row[0] in ("failed", "cancelled"):
                raise RuntimeError(f"A's task ended {row[0]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"A's task not completed in {timeout_s} s")
            time.sleep(0.01)


def scenario(cfg: BenchConfig, n: int, priority_max_tasks: int, shots: int = 100) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="qtd-fairshare-"))
    clear_state(cfg)
    token_b = os.urandom(16).hex()
    server = _start(cfg, root, priority_max_tasks, token_b)
    fleet = Fleet(cfg)
    a, b = Api(server.url, server.token), Api(server.url, token_b)
    try:
        fleet.start(1, WORKER_ARGS)
        t0 = time.perf_counter()
        submit(b, n, shots, chunk=2000)
        queued_s = time.perf_counter() - t0
        with pg(cfg) as conn:
            b_done = conn.execute(
                "SELECT count(*) FROM tasks WHERE owner = 'b' AND status = 'completed'"
            ).fetchone()[0]
        task = a.post_task({**bell_spec(shots), "enqueue": True})
        latency_s, ahead = _wait(cfg, task["task_id"], timeout_s=600)
    finally:
        a.close()
        b.close()
        fleet.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "priority_max_tasks": priority_max_tasks,
        "b_queued": n,
        "b_submit_s": round(queued_s, 2),
        "b_completed_before_a_submitted": int(b_done),
        "a_latency_s": round(latency_s, 3),
        "b_finished_before_a": ahead,
    }


def case(cfg: BenchConfig, n: int) -> dict[str, Any]:
    return {
        "n": n,
        "priority_streams": scenario(cfg, n, priority_max_tasks=8),
        "one_stream": scenario(cfg, n, priority_max_tasks=0),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fairshare", description=__doc__)
    ap.add_argument("--n", type=int, default=20_000, help="tasks user B queues first")
    ap.add_argument("--db-name", default=BenchConfig.db_name)
    ap.add_argument("--redis-url", default=BenchConfig.redis_url)
    args = ap.parse_args(argv)
    cfg = BenchConfig(db_name=args.db_name, redis_url=args.redis_url)
    reset_database(cfg)
    out = case(cfg, args.n)
    print(json.dumps(out, indent=2))
    for name in ("priority_streams", "one_stream"):
        r = out[name]
        print(f"[fairshare] {name}: A's one task completed {r['a_latency_s']:.3f} s after its "
              f"POST, behind {r['b_finished_before_a']:,} of B's {args.n:,}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
