"""Many processes share one embedded pair: leases, the last holder out, SIGKILLed holders.

Real daemons under a temp home, real holder processes (Jupyter servers, a worker that joined
with no URLs, small Python holders); the finalizer stops whatever is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from devtools.demo import server_args
from devtools.launcher import ServerProcess
from qtaskdist_jupyter.core.embedded.services import services_status, stop_services
from qtaskdist_jupyter.core.embedded.watch import WATCH_INTERVAL_S
from qtaskdist_jupyter.kernel.client import Client
from tests.fixtures.backing import embedded_running
from tests.fixtures.circuits import BELL_QASM2

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from qtaskdist_jupyter.core.embedded.services import ensure_services
ensure_services(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()  # hold until the test closes stdin
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o700)  # like /root: as root, postgres's system user must still get in
    path = tmp_path / "home"
    try:
        yield path
    finally:
        stop_services(path)


def _env(home: Path, **extra: str) -> dict[str, str]:
    drop = ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "QTASKDIST_LOCAL_WORKERS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "QTASKDIST_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}


def _holder(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(home),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


def _holder_pids(home: Path) -> set[int | None]:
    return {h["pid"] for h in services_status(home)["holders"] if h["alive"]}


def _watchdog_gone(home: Path) -> bool:
    return not services_status(home)["watchdog"]["running"]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "qtaskdist_jupyter.core.embedded.cli", *args]
    return subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=120)


def test_pair_lives_while_anyone_holds_it(home: Path) -> None:
    a = _holder(home)
    b = _holder(home)
    assert embedded_running(home)
    assert _holder_pids(home) == {a.pid, b.pid}
    status = _cli(home, "services", "status")
    assert status.returncode == 0, status.stderr
    assert f"pid {a.pid}" in status.stdout and f"pid {b.pid}" in status.stdout
    assert "holders:  2" in status.stdout

    a.communicate("", timeout=30)  # the first holder exits normally: releases, pair stays
    assert a.returncode == 0
    assert embedded_running(home) and _holder_pids(home) == {b.pid}

    b.communicate("", timeout=30)  # the last holder out stops the pair on its way out
    assert not embedded_running(home)
    _wait(lambda: _watchdog_gone(home), 3 * WATCH_INTERVAL_S + 5, "the watchdog to exit")


def test_sigkill_of_a_holder(home: Path) -> None:
    a = _holder(home)
    b = _holder(home)
    a.kill()  # no release: its lease stays until someone finds the pid dead
    a.wait(10)
    time.sleep(2 * WATCH_INTERVAL_S)
    assert embedded_running(home), "a SIGKILLed holder took the pair away from the others"
    assert _holder_pids(home) == {b.pid}  # the dead one's lease was dropped

    b.kill()  # the last holder dies too: the watchdog stops the pair
    b.wait(10)
    took = _wait(lambda: not embedded_running(home), 3 * WATCH_INTERVAL_S + 20, "the watchdog")
    print(f"\npair stopped {took:.1f} s after the last holder's SIGKILL")
    _wait(lambda: _watchdog_gone(home), 10, "the watchdog to exit")
    assert "no live holder left" in (home / "watchdog.log").read_text()


def test_services_start_pins_until_stop(home: Path) -> None:
    done = _cli(home, "services", "start")
    assert done.returncode == 0, done.stderr
    a = _holder(home)
    a.communicate("", timeout=30)
    time.sleep(2 * WATCH_INTERVAL_S)
    assert embedded_running(home), "the pinned pair stopped when a holder left"
    pinned = [h for h in services_status(home)["holders"] if h["pinned"]]
    assert len(pinned) == 1 and "services start" in pinned[0]["command"]
    b = _holder(home)
    stopped = _cli(home, "services", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert f"pid {b.pid} held them" in stopped.stdout  # told whom it left without services
    assert not embedded_running(home)
    b.communicate("", timeout=30)
    assert services_status(home)["holders"] == []


def _server(home: Path, tmp: Path, name: str, workers: int) -> ServerProcess:
    root = tmp / name
    root.mkdir()
    env = _env(home, QTASKDIST_LOCAL_WORKERS=str(workers))
    log = tmp / f"{name}.log"
    return ServerProcess(root, env=env, log_path=log, extra_args=server_args())


def _bell(server: ServerProcess) -> dict[str, int]:
    with Client(server.url, server.token) as client:
        handle = client.submit("simulate", {"circuit": BELL_QASM2, "shots": 200, "seed": 7})
        return handle.counts(timeout_s=120)  # type: ignore[union-attr,return-value]


def test_two_servers_and_a_joined_worker(home: Path, tmp_path: Path) -> None:
    first = _server(home, tmp_path, "first", 0).start()
    second = _server(home, tmp_path, "second", 0).start()
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(  # joins with no URLs: holds the pair too
        [sys.executable, "-m", "qtaskdist_worker", "--concurrency", "1", "--name", "joined"],
        env=_env(home), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait(lambda: len(_holder_pids(home)) == 3, 60, "three holders")
        assert _holder_pids(home) == {first.proc.pid, second.proc.pid, worker.pid}  # type: ignore[union-attr]

        first.stop()  # the server that started the pair exits normally
        assert embedded_running(home)
        counts = _bell(second)  # submitted through the second, run by the joined worker
        assert sum(counts.values()) == 200 and set(counts) <= {"00", "11"}, counts
        assert worker.poll() is None

        assert second.proc is not None
        second.proc.send_signal(signal.SIGKILL)  # a crash: no release
        second.proc.wait(10)
        time.sleep(2 * WATCH_INTERVAL_S)
        assert embedded_running(home), "the SIGKILLed server took the worker's services"
        assert _holder_pids(home) == {worker.pid}
        health = json.loads(_cli(home, "services", "status", "--json").stdout)
        assert [h["pid"] for h in health["holders"]] == [worker.pid]

        worker.send_signal(signal.SIGTERM)  # the last holder leaves: the pair stops
        assert worker.wait(60) == 0
        assert not embedded_running(home)
    finally:
        for proc in (worker,):
            if proc.poll() is None:
                proc.kill()
        first.stop()
        second.stop()
        log.close()
    _wait(lambda: _watchdog_gone(home), 3 * WATCH_INTERVAL_S + 5, "the watchdog to exit")
    left = [p for p in psutil.process_iter(["cmdline"]) if str(home) in str(p.info["cmdline"])]
    assert not left, left
