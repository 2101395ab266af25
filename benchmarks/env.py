"""The benchmark's environment: its own database and Redis DB, a Jupyter server, workers.

Nothing here is mocked: a real ``jupyter server`` with the extension (via
:class:`devtools.launcher.ServerProcess`), real ``python -m qtaskdist_worker``
processes, the local PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from devtools.launcher import ServerProcess
from qtaskdist_jupyter.core.config import libpq_url, normalize_database_url

ROOT = Path(__file__).resolve().parent.parent
BELL = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "h q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
)


@dataclass
class BenchConfig:
    admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    db_name: str = "qtd_bench"
    redis_url: str = "redis://127.0.0.1:6379/14"
    shots: int = 100

    @property
    def database_url(self) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{self.db_name}"


def machine_info() -> dict[str, Any]:
    import psutil

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu_model": model,
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for mod in ("qiskit", "qiskit_aer", "sqlalchemy", "psycopg", "redis", "jupyter_server"):
        try:
            info[f"{mod}_version"] = __import__(mod).__version__
        except (ImportError, AttributeError):
            info[f"{mod}_version"] = None
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # Results files are written by the runs themselves: not a change of the code.
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!benchmarks/results",
            ],  # fmt: skip
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    return info


def reset_database(cfg: BenchConfig) -> None:
    """Drop and recreate the benchmark database, then migrate it to head."""
    from qtaskdist_jupyter.core.migrate import upgrade

    with psycopg.connect(libpq_url(normalize_database_url(cfg.admin_url)), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{cfg.db_name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{cfg.db_name}"')
    upgrade(normalize_database_url(cfg.database_url))


def clear_state(cfg: BenchConfig) -> None:
    """Empty the tasks table and the Redis DB between benchmarks (the server stays up).

    Workers must be stopped: flushing drops the consumer groups they read from.
    """
    with psycopg.connect(libpq_url(normalize_database_url(cfg.database_url)), autocommit=True) as c:
        c.execute("TRUNCATE tasks CASCADE")  # and their stored result arrays (FK)
        c.execute("VACUUM ANALYZE tasks")
    r = redis.Redis.from_url(cfg.redis_url)
    r.flushdb()
    r.close()


def pg(cfg: BenchConfig) -> psycopg.Connection:
    return psycopg.connect(libpq_url(normalize_database_url(cfg.database_url)), autocommit=True)


@dataclass
class Fleet:
    """Worker processes started the way the server starts its local workers."""

    cfg: BenchConfig
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="qtd-bench-w-")))

    def start(self, n: int, extra: list[str] | None = None, *, wait_s: float = 120.0) -> Fleet:
        env = {**os.environ, **service_env(self.cfg)}
        for _i in range(n):
            log = open(self.log_dir / f"worker-{len(self.procs)}.log", "ab")  # noqa: SIM115
            cmd = [
                sys.executable, "-m", "qtaskdist_worker", "--name", f"bench-{len(self.procs)}",
                "--task-types", "simulate", "--log-level", "WARNING", *(extra or []),
            ]  # fmt: skip
            self.procs.append(
                subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            )
        try:
            self.wait_ready(n, wait_s)
        except BaseException:
            self.stop()  # a worker not ready in time must not run on into the next case
            raise
        return self

    def wait_ready(self, n: int, wait_s: float) -> None:
        """Ready = heartbeat written, which happens after the job processes imported Aer."""
        r = redis.Redis.from_url(self.cfg.redis_url)
        deadline = time.monotonic() + wait_s
        try:
            while r.hlen("qtaskdist:workers") < n:
                for p in self.procs:
                    if p.poll() is not None:
                        raise RuntimeError(f"worker exited with {p.returncode}; see {self.log_dir}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not ready after {wait_s} s; see {self.log_dir}")
                time.sleep(0.1)
        finally:
            r.close()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_env(cfg: BenchConfig) -> dict[str, str]:
    return {"DATABASE_URL": cfg.database_url, "REDIS_URL": cfg.redis_url}


def start_server(cfg: BenchConfig, root: Path) -> ServerProcess:
    env = {
        **service_env(cfg),
        "QTASKDIST_LOCAL_WORKERS": "0",  # the benchmarks start their own, counted, workers
        "QTASKDIST_HOME": str(root / "home"),
        # One owner submits every benchmark's tasks: the per-user quota is not measured.
        "QTASKDIST_MAX_ACTIVE_TASKS": "10000000",
    }
    return ServerProcess(
        root, env=env, extra_args=["--ServerApp.log_level=WARN", "--allow-root"]
    ).start()
