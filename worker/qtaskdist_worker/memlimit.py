"""The job processes' memory limit, and how a task that runs out of it fails.

A job process sets its own address-space limit (``RLIMIT_AS``) once it has imported qiskit
and Aer and run its warm-up: its size then (the interpreter's baseline, about 1.4 GB of
address space with one Aer thread) plus a headroom, ``--job-memory-mb`` or by default
the task budget (``QTASKDIST_MAX_TASK_MEMORY_BYTES``) + the result limit
(``QTASKDIST_MAX_RESULT_BYTES``: a saved statevector is copied out of Aer) +
:data:`SLACK_BYTES` (threads' stacks and malloc arenas, which count as address space).

Past it, an allocation fails inside the job process: Aer reports "Cannot allocate
memory", numpy raises MemoryError. The task fails alone with one line starting
``memory_exceeded:``; the job process answers and serves the next task. Every Aer call
also passes ``max_memory_mb`` (the task budget), so Aer refuses a state that does not fit
before allocating it.
"""

from __future__ import annotations

import re
import resource

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import MemoryExceeded

MIB = 1024 * 1024
SLACK_BYTES = 512 * MIB
_AER_MEMORY = re.compile(
    r"Insufficient memory to run circuit|Cannot allocate memory|std::bad_alloc|"
    r"Unable to allocate|out of memory",
    re.IGNORECASE,
)
_AER_PREFIX = re.compile(
    r"^(?:Aer(?: could not run the circuit)?:\s*)?(?:ERROR:\s*)?(?:\[Experiment \d+\]\s*)?"
)


def default_headroom_bytes(limits: Limits) -> int:
    """What a job process may add to its start-up size when ``--job-memory-mb`` is unset."""
    return limits.max_task_memory_bytes + limits.max_result_bytes + SLACK_BYTES


def headroom_bytes(limits: Limits, job_memory_mb: int | None) -> int:
    return job_memory_mb * MIB if job_memory_mb else default_headroom_bytes(limits)


def address_space_bytes() -> int:
    """This process's address space now (``VmSize``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    return pages * resource.getpagesize()


def limit_address_space(headroom: int) -> int:
    """Set RLIMIT_AS to the current size plus ``headroom``; returns the limit set (0 when
    the hard limit is already lower, which is then left as it is)."""
    limit = address_space_bytes() + headroom
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < limit:
        return 0
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


def is_memory_failure(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or bool(_AER_MEMORY.search(str(exc)))


def as_memory_error(exc: BaseException) -> BaseException:
    """``exc`` as MemoryExceeded (one line: ``memory_exceeded: …``) when it is a failed
    allocation or Aer's memory refusal; any other error as it is."""
    if isinstance(exc, MemoryExceeded) or not is_memory_failure(exc):
        return exc
    text = " ".join(str(exc).split()) or "an allocation failed"
    text = _AER_PREFIX.sub("", text).split(" ERROR: ")[0]
    out = MemoryExceeded(f"memory_exceeded: the task needs more memory than it may use ({text})")
    out.__cause__ = exc
    return out
