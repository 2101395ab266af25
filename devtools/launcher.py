"""Start a Jupyter server (with the qtaskdist extension) in a child process and wait for it.

Used by the demo (``devtools/demo.py``), the notebook tests, the browser test and the
benchmarks: each needs a real server on a free port with a known token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from qtaskdist_jupyter.core.errors import ServiceUnavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``jupyter server`` (or ``jupyter lab``) as a child process."""

    def __init__(
        self,
        root_dir: Path,
        *,
        env: dict[str, str] | None = None,
        lab: bool = False,
        port: int | None = None,
        token: str | None = None,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
        own_group: bool = False,
    ) -> None:
        self.root_dir = root_dir
        self.port = port or free_port()
        self.token = token or secrets.token_hex(16)
        self.lab = lab
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or root_dir / "jupyter-server.log"
        self.extra_args = extra_args or []
        # A process group of its own (server, local workers, kernels), killed whole on
        # stop(): a test run starts many servers and must leave no kernel behind.
        self.own_group = own_group
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 90.0) -> ServerProcess:
        app = "jupyterlab" if self.lab else "jupyter_server"
        cmd = [
            sys.executable,
            "-m",
            app,
            f"--ServerApp.port={self.port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.port_retries=0",
            *self.extra_args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.root_dir,
            start_new_session=self.own_group,
        )
        self.wait_ready(timeout_s)
        return self

    def get(self, path: str, timeout_s: float = 5.0) -> Any:
        req = urllib.request.Request(
            self.url + path.lstrip("/"), headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServiceUnavailable(
                    f"jupyter server exited with {self.proc.returncode}; log: {self.log_path}\n"
                    + self.tail()
                )
            try:
                self.get("qtaskdist/api/health")
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = exc
                time.sleep(0.25)
        self.stop()
        raise ServiceUnavailable(
            f"jupyter server not ready after {timeout_s} s ({last}); log: {self.log_path}\n"
            + self.tail()
        )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kernel_env(self) -> dict[str, str]:
        """What a kernel this server did not start needs to find it."""
        return {"QTASKDIST_SERVER_URL": self.url, "QTASKDIST_TOKEN": self.token}

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM, not SIGINT: without a terminal jupyter_server leaves SIGINT to Python's
            # KeyboardInterrupt, which exits without stopping the extensions, so the local
            # workers and the embedded services it started would outlive it.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        if self.proc is not None and self.own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # what the server left running

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
