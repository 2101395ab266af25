"""Who holds the embedded PostgreSQL + Valkey: one lease file per holder under ``home/leases``.

Policy (docs/embedded.md): the pair lives while anyone holds it, and the last holder out
stops it. A holder is a process (a Jupyter server, a worker that joined with no URLs, the
CLI while it runs); its lease is ``leases/<pid>.json`` with the process's start time, so a
recycled pid is never taken for the holder. ``qtaskdist services start`` writes the one
lease that is no process, ``leases/pinned.json``: an operator who started the pair by hand
keeps it until ``qtaskdist services stop``.

A holder killed with SIGKILL cannot remove its lease; the next look at the leases (a
release, a start, the watchdog of :mod:`qtaskdist_jupyter.core.embedded.watch`) finds the pid
dead and drops the lease. The caller holds ``services.lock`` around every change.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

import psutil

LEASE_DIR = "leases"
PINNED = "pinned"


class LeaseJson(TypedDict):
    """A lease as ``qtaskdist services status`` shows it: its fields, then whether it is
    the pinned one and whether its holder runs."""

    pid: int | None
    create_time: float | None
    command: str
    since: float
    pinned: bool
    alive: bool


@dataclass(frozen=True)
class Lease:
    pid: int | None  # None: the pinned lease of `qtaskdist services start`
    create_time: float | None  # psutil's start time of pid when the lease was taken
    command: str  # what holds it, for `qtaskdist services status`
    since: float  # epoch seconds

    @property
    def pinned(self) -> bool:
        return self.pid is None

    def alive(self) -> bool:
        if self.pid is None:
            return True
        try:
            proc = psutil.Process(self.pid)
            # A start time off by more than clock rounding: the pid was recycled.
            same = self.create_time is None or abs(proc.create_time() - self.create_time) < 1.0
            return same and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def as_dict(self) -> LeaseJson:
        return LeaseJson(
            pid=self.pid,
            create_time=self.create_time,
            command=self.command,
            since=self.since,
            pinned=self.pinned,
            alive=self.alive(),
        )


def _dir(home: Path) -> Path:
    return home / LEASE_DIR


def _path(home: Path, pid: int | None) -> Path:
    return _dir(home) / f"{PINNED if pid is None else pid}.json"


def _command(pid: int) -> str:
    try:
        words = psutil.Process(pid).cmdline()
    except psutil.Error:
        return "?"
    # "python -m qtaskdist_worker ..." says more than the interpreter's path.
    words = [Path(words[0]).name, *words[1:]] if words else []
    return " ".join(words)[:200]


def acquire(home: Path, pid: int | None = None) -> Lease:
    """Record ``pid`` (default: this process) as a holder; idempotent."""
    pid = os.getpid() if pid is None else pid
    try:
        create_time: float | None = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None
    lease = Lease(pid, create_time, _command(pid), time.time())
    _write(home, lease)
    return lease


def pin(home: Path) -> Lease:
    """The lease of ``qtaskdist services start``: no process, kept until services stop."""
    lease = Lease(None, None, " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), time.time())
    _write(home, lease)
    return lease


def _write(home: Path, lease: Lease) -> None:
    _dir(home).mkdir(parents=True, exist_ok=True)
    target = _path(home, lease.pid)
    if target.exists():  # keep the first "since"
        return
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(lease)))
    tmp.replace(target)


def release(home: Path, pid: int | None = None) -> bool:
    """Drop ``pid``'s lease (default: this process); True if it had one."""
    pid = os.getpid() if pid is None else pid
    try:
        _path(home, pid).unlink()
        return True
    except FileNotFoundError:
        return False


def holders(home: Path) -> list[Lease]:
    """Every recorded lease, live or not, oldest first."""
    out = []
    for path in sorted(_dir(home).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            out.append(
                Lease(data["pid"], data["create_time"], str(data["command"]), float(data["since"]))
            )
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # half a file from a holder killed mid-write
    return sorted(out, key=lambda lease: lease.since)


def live_holders(home: Path) -> list[Lease]:
    """The holders still running; the leases of dead ones are removed."""
    live = []
    for lease in holders(home):
        if lease.alive():
            live.append(lease)
        else:
            _path(home, lease.pid).unlink(missing_ok=True)
    return live


def clear(home: Path) -> list[Lease]:
    """Drop every lease (``qtaskdist services stop``); returns the live ones it dropped."""
    live = live_holders(home)
    for lease in live:
        _path(home, lease.pid).unlink(missing_ok=True)
    return live
