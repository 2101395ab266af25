"""Waiting for tasks (``Client.wait_for``, under every handle's ``wait``).

Waiting never polls task rows in a loop: it parks on the events long poll and re-reads
the rows (one GET) each time it wakes, so a missed event costs one poll period at most.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core.errors import WaitTimeout
from qtaskdist_jupyter.core.status import FINISHED
from qtaskdist_jupyter.kernel.answers import EventJson

if TYPE_CHECKING:  # pragma: no cover
    from qtaskdist_jupyter.kernel.client import Client

# The server caps one long poll at 30 s (QtaskdistApp.events_max_timeout_s).
POLL_S = 25.0


def wait_for(
    client: Client,
    check: Callable[[], tuple[int, int]],
    relevant: Callable[[EventJson], bool],
    *,
    timeout_s: float | None = None,
    progress: bool = False,
    desc: str = "tasks",
) -> None:
    """Block until ``check()`` says (done, total) with done == total; ``relevant`` picks
    the events after which to check again.

    The cursor is taken before the first check, so an event that lands between the
    check and the first poll is still seen.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    cursor = client.events(timeout_s=0)["cursor"]
    done, total = check()
    bar = _bar(total, desc) if progress else None
    try:
        while True:
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.refresh()
            if done >= total:
                return
            left = POLL_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"timed out after {timeout_s:g} s waiting for {desc}: "
                    f"{done} of {total} finished"
                )
            # Only finished tasks change (done, total): queued / running events would
            # end each long poll for nothing.
            body = client.events(
                after=cursor, timeout_s=round(min(left, POLL_S), 3), statuses=FINISHED
            )
            cursor = body["cursor"]
            events = body["events"]
            # No event at all (timeout) also re-reads: it is the fallback for a lost one.
            if not events or any(relevant(e) for e in events):
                done, total = check()
    finally:
        if bar is not None:
            bar.close()


def _bar(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm  # tqdm.auto probes for ipywidgets: only when a bar shows

    return tqdm(total=total, desc=desc, unit="task", leave=True)
