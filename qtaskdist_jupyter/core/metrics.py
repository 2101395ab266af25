"""Process-wide counters the core keeps for the Prometheus endpoints of the server
(server_extension/qtaskdist_server/metrics.py) and the worker
(worker/qtaskdist_worker/metrics.py). Plain integers: the core does not depend on
prometheus_client; the endpoints read these at scrape time. Names: docs/metrics.md.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio.retry import Retry

T = TypeVar("T")


class _Counter:
    """A thread-safe monotonic count (the server validates in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def inc(self, n: int = 1) -> None:
        with self._lock:
            self._value += n

    @property
    def value(self) -> int:
        return self._value


# Redis commands tried again after a ConnectionError / TimeoutError (a pooled connection
# the server or a middlebox dropped, a Redis restart).
REDIS_RETRIES = _Counter()


class CountingRetry(Retry):
    """redis-py's bounded Retry, counting each retry in :data:`REDIS_RETRIES`."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures = 0

        async def counted(*args: Any) -> Any:
            # Called once per failure, before the backoff; the last failure (no retry
            # left, the error goes up) is not a retry.
            nonlocal failures
            failures += 1
            if self._retries < 0 or failures <= self._retries:
                REDIS_RETRIES.inc()
            result = fail(*args)
            if hasattr(result, "__await__"):
                return await result
            return result

        return await super().call_with_retry(
            do, counted, is_retryable=is_retryable, with_failure_count=with_failure_count
        )
