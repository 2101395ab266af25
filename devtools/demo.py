"""``python -m devtools.demo`` (``scripts/demo.sh``): the main job, run headless.

It lives outside the wheel because it runs the checkout's ``notebooks/01-quickstart.ipynb``.

It starts a Jupyter server with the qtaskdist extension (a child process, as
``jupyter lab`` would run): with no DATABASE_URL / REDIS_URL the extension starts the
embedded PostgreSQL + Valkey and a local worker, and stops what it started on shutdown.
Then it executes ``notebooks/01-quickstart.ipynb`` with nbclient (the kernel finds the
server through ``QTASKDIST_SERVER_URL`` / ``QTASKDIST_TOKEN``, the variables the extension
exports to the kernels it starts), and prints the task table and the Bell counts.

:func:`execute_notebook` and :func:`wait_for_worker` are shared with the notebook tests
(``notebooks/conftest.py``, ``notebooks/store_outputs.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from devtools.launcher import ServerProcess
from qtaskdist_jupyter.core.config import Settings, load_settings
from qtaskdist_jupyter.core.errors import QtaskdistError, WaitTimeout
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.kernel.client import Client

QUICKSTART = "notebooks/01-quickstart.ipynb"


def say(step: str) -> None:
    print(f"==> {step}", flush=True)


def server_args() -> list[str]:
    """Headless: only our extension (the others cost seconds of startup on a small
    machine), and root allowed (containers, CI)."""
    args = [
        f"--ServerApp.jpserver_extensions={name}=False"
        for name in ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--ServerApp.allow_root=True")
    return args


def wait_for_worker(server: Any, timeout_s: float = 90.0) -> dict[str, Any]:
    """Until the server's health lists a live worker; returns that health document."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = server.get("qtaskdist/api/health")
        if any(w.get("alive") for w in health.get("workers", [])):
            return dict(health)
        if time.monotonic() > deadline:
            raise WaitTimeout(
                f"no live worker after {timeout_s:g} s (health: {health}); "
                f"server log: {server.log_path}"
            )
        time.sleep(0.3)


def execute_notebook(
    path: Path,
    kernel_env: dict[str, str],
    *,
    timeout_s: float = 300.0,
    cwd: Path | None = None,
    kernel_log: Path | None = None,
) -> Any:
    """Run every cell of ``path`` in a fresh kernel; returns the executed notebook.

    ``kernel_log``: where the kernel process's own stdout/stderr go (its start-up
    warnings); cell outputs come over the kernel protocol either way.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=int(timeout_s),
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(cwd or path.parent)}},
    )
    # ipykernel picks matplotlib's inline backend itself (figures become outputs) unless
    # MPLBACKEND says otherwise, so the kernel does not get the server's Agg.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if kernel_log is None:
        client.execute(env={**env, **kernel_env})
        return nb
    with open(kernel_log, "ab") as log:
        client.execute(env={**env, **kernel_env}, stdout=log, stderr=log)
    return nb


def notebook_text(nb: Any) -> list[str]:
    """What an executed notebook printed (stdout), cell by cell."""
    out: list[str] = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                out.append(o["text"].rstrip("\n"))
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'task_id':<10} {'name':<12} {'type':<14} {'status':<10} {'attempt':>7} "
        f"{'worker':<18} {'run_s':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        run = (r.get("meta_data") or {}).get("run_time_s")
        lines.append(
            f"{str(r['task_id'])[:8]:<10} {str(r.get('name') or '-')[:12]:<12} "
            f"{r['task_type']:<14} {r['status']:<10} {r['attempt']:>7} "
            f"{str(r.get('worker') or '-')[:18]:<18} "
            f"{(f'{run:.3f}' if isinstance(run, int | float) else '-'):>7}"
        )
    return "\n".join(lines)


def find_quickstart() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / QUICKSTART).is_file():
            return base / QUICKSTART
    raise QtaskdistError(
        f"{QUICKSTART} not found in {Path.cwd()} or next to the package; run "
        "scripts/demo.sh from a clone of the repository"
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_demo(settings: Settings, *, timeout_s: float = 180.0) -> int:
    notebook = find_quickstart()
    # SIGTERM / SIGHUP (a closed terminal) end the demo through `finally` like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    env = {"QTASKDIST_HOME": str(settings.home)}
    # With URLs given the extension starts no worker by default; the demo needs one.
    if settings.local_workers is None:
        env["QTASKDIST_LOCAL_WORKERS"] = "1"
    where = (
        "the PostgreSQL / Redis of DATABASE_URL / REDIS_URL"
        if not settings.embedded
        else f"embedded PostgreSQL + Valkey under {settings.home}"
    )
    say(f"starting a Jupyter server with the qtaskdist extension on {where}")
    say("  (the first start initialises the database: ~10 s)")
    workdir = Path(tempfile.mkdtemp(prefix="qtaskdist-demo-"))
    t0 = time.monotonic()
    server = ServerProcess(
        workdir, env=env, log_path=workdir / "jupyter-server.log", extra_args=server_args()
    )
    try:
        server.start(timeout_s=timeout_s)
        say(f"server up at {server.url} after {time.monotonic() - t0:.1f} s; waiting for a worker")
        health = wait_for_worker(server, timeout_s=60)
        names = ", ".join(w["name"] for w in health["workers"] if w.get("alive"))
        say(f"worker ready: {names}")
        say(f"running {notebook.relative_to(notebook.parents[1])} headless (nbclient)")
        t1 = time.monotonic()
        nb = execute_notebook(
            notebook, server.kernel_env(), timeout_s=timeout_s, kernel_log=workdir / "kernel.log"
        )
        say(f"notebook finished in {time.monotonic() - t1:.1f} s; its printed output:")
        for text in notebook_text(nb):
            print("    " + text.replace("\n", "\n    "))
        with Client(server.url, server.token) as client:
            rows = client.tasks(limit=20, include=("result",))
        print()
        say("task table (newest first)")
        print(format_table(rows))
        print()
        bell = [r for r in rows if r.get("name") == "bell" and r["status"] == TaskStatus.COMPLETED]
        if not bell:
            print("no completed 'bell' task; see the table above", file=sys.stderr)
            return 1
        counts = bell[0]["result"]["counts"]
        say(f"Bell counts: {dict(sorted(counts.items()))}")
        return 0
    except Exception as exc:  # noqa: BLE001 - one clear line, then the server log
        if isinstance(exc, QtaskdistError | CellExecutionError):
            print(f"demo failed: {exc}", file=sys.stderr)
            print(f"server log ({server.log_path}):\n{server.tail()}", file=sys.stderr)
            return 1
        raise
    finally:
        # Stop first: printing may fail (stdout closed, e.g. `scripts/demo.sh | head`), and
        # the server must not outlive us with its worker and embedded services.
        server.stop()
        with contextlib.suppress(OSError):
            say("stopped the server (and the embedded services it started)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.sh",
        description="Run notebooks/01-quickstart.ipynb through a Jupyter server with the"
        " qtaskdist extension (embedded PostgreSQL + Valkey when no URLs are set).",
    )
    parser.add_argument("--timeout-s", type=float, default=180.0, help="give up after this long")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except QtaskdistError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    return run_demo(settings, timeout_s=args.timeout_s)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "execute_notebook",
    "format_table",
    "notebook_text",
    "run_demo",
    "wait_for_worker",
]
