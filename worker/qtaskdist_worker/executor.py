"""A pool of long-lived child processes that run simulate / convert jobs.

Why processes: Aer holds the GIL-free C++ loop for as long as a circuit runs and never
returns on some inputs (a QASM 3 ``while`` whose condition never changes), so a job that
runs past its time limit can only be stopped by killing the process it runs in.

Each child imports qiskit and Aer once at start, then serves one request at a time over a
pipe. A request carries several *units* (Aer calls, or one conversion, each) that the
child runs one after another, answering after each: so the worker pays one pipe round trip,
one claim and one completion statement per request, while every unit keeps its own time
limit. Requests and replies travel as JSON bytes (never pickles): the payloads come from
the database and stay plain data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core import fastjson
from qtaskdist_jupyter.core.errors import ChildDied, JobCancelled, JobError, JobTimeout
from qtaskdist_jupyter.core.runtime import freeze_startup_heap

if TYPE_CHECKING:  # the jobs package's handlers load qiskit: imported in the child only
    from .jobs.protocol import PoolRequest, Ready, UnitReply, UnitTask

log = logging.getLogger(__name__)
_CTX = mp.get_context("spawn")


def at_unit(exc: JobError, unit: int) -> JobError:
    """Mark which unit of a request did not answer (see :meth:`ExecutorPool.run`)."""
    exc.unit = unit
    return exc


def _child_main(
    conn: Connection,
    threads: int,
    limits: dict[str, float],
    spool_dir: str,
    lendable: int,
    memory_headroom: int,
) -> None:
    """Entry point of a child process: import once, then serve requests until EOF."""
    # OpenMP reads these when the library loads, so they must be set before Aer imports;
    # otherwise every idle OpenMP thread spin-waits and one job burns two cores. OpenMP may
    # start up to ``lendable`` threads (a sweep on an idle pool borrows the others'), but
    # every Aer call names its own max_parallel_threads, ``threads`` unless lent more;
    # BLAS keeps ``threads``, as it reads OMP_NUM_THREADS when nothing more specific is set.
    os.environ["OMP_NUM_THREADS"] = str(max(threads, lendable))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .jobs import handle_request, versions, warm_up  # heavy imports happen here, once
    from .memlimit import limit_address_space

    warm_up()
    freeze_startup_heap()
    # From here on an allocation past the limit fails in this process (memlimit.py).
    rlimit_as = limit_address_space(memory_headroom) if memory_headroom else 0

    ready: Ready = {"ready": True, "rlimit_as": rlimit_as, **versions()}
    conn.send_bytes(json.dumps(ready).encode())
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        request: PoolRequest = fastjson.loads(raw)
        # A request may lend its units the threads of idle job processes (Dispatcher).
        unit_threads = int(request.get("threads") or threads)
        # One reply per unit, sent as soon as the unit ends: the worker settles finished
        # units while later ones run, and times each unit on its own limit. Large arrays
        # go to files in spool_dir, not through the pipe (qtaskdist_jupyter.core.arrays).
        for unit in request["units"]:
            started = time.perf_counter()
            reply = handle_request(
                {
                    "kind": request["kind"],
                    "tasks": unit,
                    "threads": unit_threads,
                    "limits": limits,
                    "spool_dir": spool_dir,
                    "lent_threads": bool(request.get("threads")),
                }
            )
            reply["wall_s"] = time.perf_counter() - started
            conn.send_bytes(fastjson.dumps_bytes(reply))


class Child:
    def __init__(
        self,
        threads: int,
        limits: dict[str, float],
        spool_dir: str,
        lendable: int = 1,
        memory_headroom: int = 0,
    ) -> None:
        parent, child = _CTX.Pipe(duplex=True)
        self.conn = parent
        self.proc = _CTX.Process(
            target=_child_main,
            args=(child, threads, limits, spool_dir, lendable, memory_headroom),
            daemon=True,
            name="qtaskdist-job",
        )
        self.proc.start()
        child.close()
        self.info: Ready | None = None
        self.killed_for: str | None = None

    def wait_ready(self, timeout: float = 120.0) -> Ready:
        if not self.conn.poll(timeout):
            raise RuntimeError("job process did not start in time")
        info: Ready = json.loads(self.conn.recv_bytes())
        self.info = info
        return info

    def kill(self, why: str) -> None:
        self.killed_for = why
        if self.proc.is_alive():
            self.proc.kill()

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)


class _Exchange:
    """One request on one child, as the event loop sees it: the replies so far, the
    running unit's deadline, and ``ended`` (set once every unit answered, or the child
    was killed or closed its pipe)."""

    def __init__(
        self,
        child: Child,
        units: list[list[UnitTask]],
        timeouts_s: list[float],
        on_reply: Callable[[int, UnitReply], None],
        on_start: Callable[[int], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.child = child
        self.n_units = len(units)
        self.timeouts_s = timeouts_s
        self.on_reply = on_reply
        self.on_start = on_start
        self.answered = 0
        self.deadline = self.loop.call_later(timeouts_s[0], self.overran)

    def end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def overran(self) -> None:
        self.child.kill("timeout")
        self.end()

    def cancelled(self, _: Any) -> None:
        self.child.kill("cancelled")
        self.end()

    def readable(self) -> None:
        # The event loop reads the pipe itself, with no thread hop per reply: a reply
        # is one small write, so a readable pipe holds a whole frame (or the rest of
        # one the child is writing at this moment).
        try:
            reply = fastjson.loads(self.child.conn.recv_bytes())
        except (EOFError, OSError):
            self.loop.remove_reader(self.child.conn.fileno())
            self.end()
            return
        self.deadline.cancel()
        self.answered += 1
        self.on_reply(self.answered - 1, reply)
        if self.answered < self.n_units:
            self.deadline = self.loop.call_later(self.timeouts_s[self.answered], self.overran)
            self.on_start(self.answered)
        else:
            self.end()


def _early_stop(why: str | None, limit_s: float, exitcode: int | None, ran_s: float) -> JobError:
    """The error for a request that stopped before its last unit answered: ``why`` the
    child was killed (None: it died on its own)."""
    if why == "cancelled":
        return JobCancelled("the task was cancelled while it ran")
    if why == "timeout":
        return JobTimeout(f"exceeded its time limit of {limit_s:g} s")
    return ChildDied(f"the job process exited with code {exitcode} after {ran_s:.1f} s")


class ExecutorPool:
    """``size`` children; :meth:`run` hands a request to an idle one. Each runs under an
    address-space limit of its start-up size plus ``memory_headroom`` bytes (0: none)."""

    def __init__(
        self, size: int, *, threads: int, limits: dict[str, float], memory_headroom: int = 0
    ) -> None:
        self.size = size
        self.threads = threads
        self.limits = limits
        self.memory_headroom = memory_headroom
        self._idle: asyncio.Queue[Child] = asyncio.Queue()
        self._all: set[Child] = set()
        # Start-up and shutdown block (waiting for imports, joining): off the event loop.
        self._threads = ThreadPoolExecutor(max_workers=size + 1, thread_name_prefix="qtd-pipe")
        # The last started job process's ready message (its versions, its limit).
        self.info: Ready | None = None
        self.closing = False  # shutting down: a killed child is not replaced
        # Where children write large result arrays; only the worker creates its name.
        self.spool_dir = tempfile.mkdtemp(prefix="qtaskdist-spool-")

    async def start(self) -> None:
        children = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
        for c in children:
            self._idle.put_nowait(c)
        limit = self.info["rlimit_as"] if self.info else 0
        log.info("job processes: address-space limit %s", f"{limit >> 20} MiB" if limit else "none")

    async def _spawn(self) -> Child:
        loop = asyncio.get_running_loop()
        child = Child(
            self.threads,
            self.limits,
            self.spool_dir,
            self.size * self.threads,
            self.memory_headroom,
        )
        self._all.add(child)
        self.info = await loop.run_in_executor(self._threads, child.wait_ready)
        return child

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    async def run(
        self,
        kind: str,
        units: list[list[UnitTask]],
        timeouts_s: list[float],
        on_reply: Callable[[int, UnitReply], None],
        cancel: asyncio.Event | None = None,
        threads: int | None = None,
        on_start: Callable[[int], None] = lambda _j: None,
    ) -> None:
        """Run a request of ``units`` (each one ``handle_request``'s tasks) on an idle child,
        calling ``on_reply(unit index, reply)`` as each unit ends. Unit ``j`` may run for
        ``timeouts_s[j]`` from the end of unit ``j - 1``. ``threads``: Aer threads for these
        units, when not the pool's ``threads``. ``on_start(j)``: unit ``j`` begins (the
        request reached an idle child, or unit ``j - 1`` answered: a child runs its units
        one after another).

        When it stops early it raises, with ``exc.unit`` the unit that did not answer:
        :class:`JobTimeout` (that unit overran its limit), :class:`JobCancelled`, or
        :class:`ChildDied`. The child is then replaced; the caller decides what happens to
        the units after ``exc.unit``, which never started or never finished.
        """
        child = await self._idle.get()
        loop = asyncio.get_running_loop()
        fd = child.conn.fileno()
        exchange = _Exchange(child, units, timeouts_s, on_reply, on_start)
        waiter = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        started = time.monotonic()
        try:
            request: PoolRequest = {"kind": kind, "units": units, "threads": threads}
            child.conn.send_bytes(fastjson.dumps_bytes(request))
            on_start(0)
            loop.add_reader(fd, exchange.readable)
            if waiter is not None:
                waiter.add_done_callback(exchange.cancelled)
            await exchange.ended
        except asyncio.CancelledError:
            # The worker is shutting down: the child may be mid-unit.
            child.kill("shutdown")
            raise
        except (EOFError, OSError):
            pass  # the child died before it took the request: handled as below
        finally:
            exchange.deadline.cancel()
            loop.remove_reader(fd)
            if waiter is not None:
                waiter.remove_done_callback(exchange.cancelled)
                waiter.cancel()
            if child.killed_for == "shutdown":
                await self._replace(child)
        answered = exchange.answered
        if answered == len(units):
            self._idle.put_nowait(child)
            return
        why = child.killed_for
        await self._replace(child)
        ran_s = time.monotonic() - started
        raise at_unit(_early_stop(why, timeouts_s[answered], child.proc.exitcode, ran_s), answered)

    async def _replace(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, child.close)
        self._all.discard(child)
        if self.closing:
            return
        try:
            self._idle.put_nowait(await self._spawn())
        except Exception:  # noqa: BLE001 - a pool one child short still works
            log.exception("could not start a replacement job process")

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for child in list(self._all):
            await loop.run_in_executor(self._threads, child.close)
        self._all.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.spool_dir, ignore_errors=True)
