"""The retry policy (tenacity): a lost link to PostgreSQL or Redis is retried, a data
error never is. The worker's steps (retry.on_outage, until_up) and its cancel watch (the server's
migration at start-up: tests/integration/test_server_app_config.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest
from qtaskdist_worker import retry
from qtaskdist_worker.heartbeat import CancelWatch
from redis.exceptions import ResponseError
from tenacity import wait_none

from qtaskdist_jupyter.core.errors import (
    ConfigError,
    DatabaseUnavailable,
    MalformedMessage,
    QueueUnavailable,
    TransitionError,
)


def _calls(*outcomes: Any) -> tuple[list[int], Any]:
    """A coroutine function that raises or returns ``outcomes`` in turn, and its call log."""
    log: list[int] = []

    async def fn(*_args: Any) -> Any:
        log.append(1)
        outcome = outcomes[len(log) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return log, fn


def test_an_outage_is_retried_until_the_call_succeeds() -> None:
    log, fn = _calls(QueueUnavailable("down"), DatabaseUnavailable("down"), "done")
    assert asyncio.run(retry.on_outage(wait_none(), "step")(fn)) == "done"
    assert len(log) == 3


@pytest.mark.parametrize(
    "error",
    [
        ResponseError("WRONGTYPE"),
        MalformedMessage("bad"),
        TransitionError("t"),
        ValueError("x"),
        ConfigError("c"),
    ],
)
def test_a_data_error_is_never_retried(error: BaseException) -> None:
    log, fn = _calls(error, "unreachable")
    with pytest.raises(type(error)):
        asyncio.run(retry.on_outage(wait_none(), "step")(fn))
    assert len(log) == 1


def test_until_up_waits_out_an_outage_until_told_to_stop(monkeypatch) -> None:
    # The worker's read loop: an outage is waited out, and once the worker stops the
    # outage's error comes back instead of another wait (before, the loop was written by
    # hand and retried any RedisError, data errors included).
    monkeypatch.setattr(retry, "OUTAGE_FIRST_S", 0.0)
    stopping = asyncio.Event()
    outcomes = [QueueUnavailable("down")] * 50

    async def read() -> str:
        outcome = outcomes.pop(0)
        if len(outcomes) == 47:  # the third call: the worker is asked to stop
            stopping.set()
        raise outcome

    async def run() -> None:
        await retry.until_up(read, "read", unless=stopping)

    with pytest.raises(QueueUnavailable):
        asyncio.run(run())
    assert len(outcomes) == 47
    log, fn = _calls(QueueUnavailable("down"), QueueUnavailable("down"), "done")
    assert asyncio.run(retry.until_up(fn, "read", unless=asyncio.Event())) == "done"
    assert len(log) == 3


class _Broker:
    """read_cancels answers from a script: a list of entries, or an error to raise."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.afters: list[str] = []

    async def read_cancels(self, after: str, *, block_ms: int) -> list[tuple[str, str]]:
        self.afters.append(after)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


class _InFlight:
    def __init__(self, *ids: uuid.UUID) -> None:
        self.items = {i: f"item-{i}" for i in ids}
        self.cancelled: list[str] = []

    def get(self, task_id: uuid.UUID) -> str | None:
        return self.items.get(task_id)

    def cancel(self, item: str) -> None:
        self.cancelled.append(item)


def test_the_cancel_watch_rides_out_an_outage_but_not_a_data_error() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    broker = _Broker(
        [("1-0", a.hex)],
        QueueUnavailable("Redis unreachable"),
        [("5-0", "not-a-uuid"), ("6-0", b.hex)],
        ResponseError("WRONGTYPE"),
        [("9-0", a.hex)],
    )
    inflight = _InFlight(a, b)
    watch = CancelWatch(cast(Any, broker), cast(Any, inflight), pause_s=0.0)
    with pytest.raises(ResponseError):
        asyncio.run(watch.run())
    # After the outage it tails on from new cancels ("$"); the data error ends it.
    assert broker.afters == ["$", "1-0", "$", "6-0"]
    assert inflight.cancelled == [f"item-{a}", f"item-{b}"]
