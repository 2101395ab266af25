"""Process-wide tuning shared by the server, the worker and its job processes."""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's reach.

    A full collection walks every tracked object, and each of our processes holds
    qiskit's (and Jupyter's or Aer's) modules: such a walk stalls the process for tens of
    milliseconds, several times a minute under load. Once per process (a second server in
    one process, as in tests, would otherwise freeze the first one's garbage-to-be too);
    garbage first, so nothing already dead is kept for good.
    """
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
