"""Waiting out failures: the backoff of a task's retries, and the loops that keep the
worker's own steps going through a DB or Redis outage."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)
from tenacity.wait import wait_base

from qtaskdist_jupyter.core.errors import ServiceUnavailable

log = logging.getLogger("qtaskdist_worker")
T = TypeVar("T")
# An outage delays a step by this much at first, doubling up to the cap.
OUTAGE_FIRST_S = 0.2
OUTAGE_CAP_S = 5.0
# What a retry can fix: a lost link to PostgreSQL or Redis (the store and the broker raise
# ServiceUnavailable for theirs). Never a data error, which fails the same way again.
RETRYABLE: tuple[type[BaseException], ...] = (ServiceUnavailable,)


def backoff_s(
    retry_count: int, *, base_s: float = 1.0, cap_s: float = 60.0, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``retry_count + 1``: base·2ⁿ capped, then jittered into
    [½, 1]× so a burst of failures does not come back as a burst of retries."""
    ceiling = min(cap_s, base_s * (2 ** min(retry_count, 30)))
    return ceiling * (rng or random).uniform(0.5, 1.0)


async def until_up(
    fn: Callable[[], Awaitable[T]], what: str, *, unless: asyncio.Event | None = None
) -> T:
    """Run ``fn`` until the DB / Redis answer: an outage delays work, it loses none.
    Only :class:`ServiceUnavailable` is retried (waits of OUTAGE_FIRST_S, doubling up to
    OUTAGE_CAP_S); any other error is the caller's. Once ``unless`` is set (the worker
    stopping), the outage's error goes to the caller instead of another wait.

    The first call is made directly: tenacity's bookkeeping costs ~25 us of CPU a call,
    and the worker's hot path calls this several times per batch. Only a failed call
    enters tenacity, whose first attempt hands back that failure, so the waits and the
    log lines are tenacity's from the start."""
    try:
        return await fn()
    except ServiceUnavailable as exc:
        failed: ServiceUnavailable | None = exc

    async def attempt() -> T:
        nonlocal failed
        if failed is not None:
            exc, failed = failed, None
            raise exc
        return await fn()

    wait = wait_exponential(multiplier=OUTAGE_FIRST_S, max=OUTAGE_CAP_S)
    stopped = unless.is_set if unless is not None else (lambda: False)
    return await on_outage(wait, what, lambda _state: stopped())(attempt)


def on_outage(
    wait: wait_base, what: str, stop: Callable[[RetryCallState], bool] = stop_never
) -> AsyncRetrying:
    """The worker's retry policy (tenacity): call again after an error of
    :data:`RETRYABLE` until ``stop`` says no more (never, by default), waiting ``wait``
    and logging each retry; any other error goes back to the caller at once."""
    return AsyncRetrying(
        retry=retry_if_exception_type(RETRYABLE),
        stop=stop,
        wait=wait,
        before_sleep=lambda state: _log_outage(what, state),
        reraise=True,
    )


def _log_outage(what: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    delay_s = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay_s)


async def every(period_s: float, fn: Callable[[], Awaitable[Any]]) -> None:
    """Run ``fn`` every ``period_s`` for good: a periodic duty outlives any one failure."""
    while True:
        try:
            await fn()
        except ServiceUnavailable as exc:
            log.warning("%s: %s", getattr(fn, "__qualname__", fn), exc)
        except Exception:  # noqa: BLE001 - a background duty must not die
            log.exception("%s failed", getattr(fn, "__qualname__", fn))
        await asyncio.sleep(period_s)
