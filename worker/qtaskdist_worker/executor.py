"""A pool of long-lived child processes that run simulate / convert jobs.

Why processes: Aer holds the GIL-free C++ loop for as long as a circuit runs and never
returns on some inputs (a QASM 3 ``while`` whose condition never changes), so a job that
runs past its time limit can only be stopped by killing the process it runs in.

Each child imports qiskit and Aer once at start, then serves one request at a time over a
pipe. Requests and replies travel as JSON bytes (never pickles): the payloads come from the
database and stay plain data.
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
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from qtaskdist_jupyter.errors import JobError, JobTimeout

log = logging.getLogger(__name__)
_CTX = mp.get_context("spawn")


class JobCancelled(JobError):
    """The job's child was killed because its task was cancelled."""


class ChildDied(JobError):
    """The child exited without answering (crash, OOM kill): worth one more try."""

    retryable = True


def _child_main(conn: Connection, threads: int, limits: dict[str, Any], spool_dir: str) -> None:
    """Entry point of a child process: import once, then serve requests until EOF."""
    # OpenMP reads these when the library loads, so they must be set before Aer imports;
    # otherwise every idle OpenMP thread spin-waits and one job burns two cores.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .jobs import handle_request, versions  # heavy imports happen here, once
    from .jobs.simulate import warm_up

    # The first Aer run in a process costs seconds (imports, kernel loading, OpenMP pool):
    # pay it before the worker says it is ready, not inside a task's time.
    warm_up()

    conn.send_bytes(json.dumps({"ready": True, **versions()}).encode())
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        request = json.loads(raw)
        request.setdefault("threads", threads)
        request.setdefault("limits", limits)
        # Large arrays go to files here, not through the pipe (qtaskdist_jupyter.arrays).
        request["spool_dir"] = spool_dir
        reply = handle_request(request)
        conn.send_bytes(json.dumps(reply, default=str).encode())


class Child:
    def __init__(self, threads: int, limits: dict[str, Any], spool_dir: str) -> None:
        parent, child = _CTX.Pipe(duplex=True)
        self.conn = parent
        self.proc = _CTX.Process(
            target=_child_main,
            args=(child, threads, limits, spool_dir),
            daemon=True,
            name="qtaskdist-job",
        )
        self.proc.start()
        child.close()
        self.info: dict[str, Any] = {}
        self.killed_for: str | None = None

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        if not self.conn.poll(timeout):
            raise RuntimeError("job process did not start in time")
        self.info = json.loads(self.conn.recv_bytes())
        return self.info

    def roundtrip(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Blocking: send, wait up to ``timeout`` s; None when the time ran out."""
        self.conn.send_bytes(json.dumps(request, default=str).encode())
        if not self.conn.poll(timeout):
            return None
        return json.loads(self.conn.recv_bytes())

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


class ExecutorPool:
    """``size`` children; :meth:`run` hands a request to an idle one."""

    def __init__(self, size: int, *, threads: int, limits: dict[str, Any]) -> None:
        self.size = size
        self.threads = threads
        self.limits = limits
        self._idle: asyncio.Queue[Child] = asyncio.Queue()
        self._all: set[Child] = set()
        # One thread per child blocks on its pipe, so the event loop never does.
        self._threads = ThreadPoolExecutor(max_workers=size + 2, thread_name_prefix="qtd-pipe")
        self.info: dict[str, Any] = {}
        self.closing = False  # shutting down: a killed child is not replaced
        # Where children write large result arrays; only the worker creates its name.
        self.spool_dir = tempfile.mkdtemp(prefix="qtaskdist-spool-")

    async def start(self) -> None:
        children = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
        for c in children:
            self._idle.put_nowait(c)

    async def _spawn(self) -> Child:
        loop = asyncio.get_running_loop()
        child = Child(self.threads, self.limits, self.spool_dir)
        self._all.add(child)
        self.info = await loop.run_in_executor(self._threads, child.wait_ready)
        return child

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    async def run(
        self, request: dict[str, Any], timeout_s: float, cancel: asyncio.Event | None = None
    ) -> dict[str, Any]:
        """Run one request; raise JobTimeout / JobCancelled / ChildDied (child replaced)."""
        child = await self._idle.get()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._threads, child.roundtrip, request, timeout_s)
        waiter = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        started = time.monotonic()
        try:
            if waiter is not None:
                await asyncio.wait({fut, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done() and not fut.done():
                    child.kill("cancelled")
            reply = await fut
        except (EOFError, OSError, BrokenPipeError):
            reply = None
        except asyncio.CancelledError:
            child.kill("shutdown")
            await self._replace(child)
            raise
        finally:
            if waiter is not None:
                waiter.cancel()
        if reply is not None:
            self._idle.put_nowait(child)
            return reply
        why = child.killed_for
        if why is None and child.proc.is_alive():
            child.kill("timeout")
            why = "timeout"
        await self._replace(child)
        if why == "cancelled":
            raise JobCancelled("the task was cancelled while it ran")
        if why == "timeout":
            raise JobTimeout(f"exceeded its time limit of {timeout_s:g} s")
        raise ChildDied(
            f"the job process exited with code {child.proc.exitcode} after "
            f"{time.monotonic() - started:.1f} s"
        )

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
