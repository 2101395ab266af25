"""JupyterLab + a worker + headless Chromium, for the browser test (tests/test_browser.py).

JupyterLab runs as a child process (``devtools.launcher.ServerProcess``) with its
own config, runtime, settings and workspace folders, so nothing from the user's ~/.jupyter
leaks in, and with ``local_workers=0``: the test starts the worker itself, at the moment it
wants tasks to start moving. Chromium is Debian's package driven by Playwright.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.launcher import ServerProcess

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
# JupyterLab's own pop-ups ("receive news?", update checks) would cover the notebook.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def start_lab(tmp: Path, database_url: str, redis_url: str) -> ServerProcess:
    cfg, runtime, root = tmp / "cfg", tmp / "runtime", tmp / "root"
    settings, workspaces = tmp / "lab-settings", tmp / "lab-workspaces"
    for d in (cfg, runtime, root, settings, workspaces):
        d.mkdir(parents=True, exist_ok=True)
    for rel, value in LAB_SETTINGS.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTASKDIST_")}
    env.update(
        JUPYTER_CONFIG_DIR=str(cfg),
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
    )
    server = ServerProcess(
        root,
        env=env,
        lab=True,
        log_path=tmp / "jupyterlab.log",
        extra_args=[
            "--ServerApp.allow_root=True",
            f"--QtaskdistApp.database_url={database_url}",
            f"--QtaskdistApp.redis_url={redis_url}",
            "--QtaskdistApp.local_workers=0",
            f"--QtaskdistApp.home={tmp / 'qtd-home'}",
        ],
    )
    # ServerProcess replaces os.environ's QTASKDIST_* only if we drop them from its copy.
    server.env = env
    return server.start(timeout_s=120)


def start_worker(
    tmp: Path, database_url: str, redis_url: str, name: str, *task_args: str
) -> subprocess.Popen[bytes]:
    log = tmp / "worker.log"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qtaskdist_worker",
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--name",
            name,
            *task_args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def pause_process_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGSTOP)


def resume_process_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGCONT)


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        try:
            resume_process_group(proc)  # a stopped process would never see SIGTERM
        except ProcessLookupError:
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its job processes, if any are left
    except ProcessLookupError:
        pass
    proc.wait(5)


def api_get(server: ServerProcess, path: str) -> Any:
    r = httpx.get(
        server.url + "qtaskdist/api/" + path,
        headers={"Authorization": f"token {server.token}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def worker_alive(server: ServerProcess, name: str) -> bool:
    return any(
        w.get("name") == name and w.get("alive") for w in api_get(server, "health")["workers"]
    )


def api_post(server: ServerProcess, path: str, body: Any) -> Any:
    r = httpx.post(
        server.url + "qtaskdist/api/" + path,
        headers={"Authorization": f"token {server.token}"},
        json=body,
        timeout=30,
    )
    assert r.status_code < 400, (r.status_code, r.text)
    return r.json()


def write_notebook(path: Path) -> None:
    """An empty notebook that names the kernel, so Lab asks no "select kernel" question."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "c0",
                "metadata": {},
                "outputs": [],
                "source": [],
            }
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


def _not_run(why: str) -> None:
    """Skip (loudly) on a developer's machine; in CI (``CI`` set) a browser test that
    cannot run is a failure: .ci/run installs Chromium, so its absence is a broken CI."""
    if os.environ.get("CI"):
        pytest.fail(f"BROWSER TEST NOT RUN in CI: {why}")
    pytest.skip(f"BROWSER TEST NOT RUN: {why}")


@pytest.fixture
def chromium_context(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium profile; skips (loudly) only when Chromium is unusable."""
    exe = chromium_path()
    if exe is None:
        _not_run(
            "no Chromium found (install Debian's 'chromium' package; .ci/run does so when "
            "apt-get works)"
        )
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        try:
            ctx = pw.chromium.launch_persistent_context(
                user_data_dir=str(tmp_path / "chromium-profile"),
                executable_path=exe,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1500},
            )
        except PlaywrightError as exc:
            _not_run(f"Chromium at {exe} failed to launch: {exc}")
        try:
            yield ctx
        finally:
            ctx.close()


def wait_until(check: Any, timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)
