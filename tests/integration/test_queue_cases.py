"""The queue facade's behavioural cases (tests/queue_cases.py) against the real ports:
TaskStore on PostgreSQL and Broker on Redis, each case on a fresh database and a flushed
Redis database (the ``service`` fixture). The same cases run on the in-memory ports in
tests/unit/test_queue.py, so the fakes behave as the real ports do where the facade
relies on them."""

from __future__ import annotations

import pytest

from tests import queue_cases
from tests.queue_cases import CASES


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
async def test_case_on_postgres_and_redis(case: queue_cases.Case, service) -> None:
    await case(service.queue)
