"""Shared fixtures: a fresh PostgreSQL database and a fresh Redis database per test.

Real services only. TEST_DATABASE_URL / TEST_REDIS_URL point at them (defaults: the
PostgreSQL 15 and Redis 7 this machine and CI start). A missing service fails loudly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fasteners
import psycopg
import pytest
import redis

from qtaskdist_jupyter.core.config import Limits, Settings, libpq_url, normalize_database_url
from tests.fixtures.circuits import BELL_QASM2

# Fixtures come in as plugins (no star imports): jupyter_server's jp_fetch / jp_serverapp,
# and ours in tests/fixtures/.
pytest_plugins = [
    "pytest_jupyter.jupyter_server",
    "tests.fixtures.server",
    "tests.fixtures.notebook",
    "tests.fixtures.browser",
]

TEST_DATABASE_URL = normalize_database_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Per process, so two test runs on one machine do not drop each other's template.
TEMPLATE_DB = f"qtaskdist_test_template_{os.getpid()}"
# Redis databases: 0 is left alone. Tests that keep a server with a live worker running
# for a whole session get a database of their own, so no per-test fixture can flush it
# or feed its worker; per-test fixtures rotate over the rest and flush the one they take.
REDIS_DB_NOTEBOOK_SERVER = 15  # tests/nb_fixtures.py session server
REDIS_DB_BENCHMARKS = 14  # benchmarks/ (never run by the test suite)
REDIS_DB_NBVAL = 13  # notebooks/conftest.py
REDIS_DB_BROWSER = 12  # tests/test_browser.py
_redis_dbs = itertools.cycle(range(1, 12))
# A per-test database is also locked on disk while a test holds it, so two test runs on
# one machine (a developer's and CI's, or two sessions) never flush each other's.
_REDIS_LOCKS = Path(tempfile.gettempdir()) / "qtaskdist-test-redis-dbs"


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(libpq_url(TEST_DATABASE_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {TEST_DATABASE_URL}: {exc}", pytrace=False)


def _url_for(dbname: str) -> str:
    base, _, _ = TEST_DATABASE_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; each test clones it (CREATE DATABASE … TEMPLATE)."""
    from qtaskdist_jupyter.core.migrate import upgrade

    with _admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    upgrade(_url_for(TEMPLATE_DB))
    yield TEMPLATE_DB
    with _admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")


@pytest.fixture
def database_url(pg_template: str) -> Iterator[str]:
    name = f"qtd_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield _url_for(name)
    with _admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def _free_redis_db(wait_s: float = 600.0) -> Iterator[int]:
    """A database of the rotation that no other test process holds, locked until the
    test ends; waits while every one of them is taken."""
    _REDIS_LOCKS.mkdir(exist_ok=True)
    prefix = re.sub(r"\W+", "_", TEST_REDIS_URL)
    deadline = time.monotonic() + wait_s
    while True:
        for _ in range(11):
            db = next(_redis_dbs)
            lock = fasteners.InterProcessLock(str(_REDIS_LOCKS / f"{prefix}-{db}.lock"))
            if lock.acquire(blocking=False):
                try:
                    yield db
                finally:
                    lock.release()
                return
        if time.monotonic() > deadline:
            pytest.fail(f"no free Redis test database (1-11) in {wait_s:g} s", pytrace=False)
        time.sleep(0.2)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with _free_redis_db() as db:
        yield from _flushed_redis(db)


def _flushed_redis(db: int) -> Iterator[str]:
    url = f"{TEST_REDIS_URL.rstrip('/')}/{db}"
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {url}: {exc}", pytrace=False)
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
def settings(database_url: str, redis_url: str, limits: Limits, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        home=tmp_path / "home",
        limits=limits,
        events_maxlen=10_000,
    )


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator:
    from qtaskdist_jupyter.core.service import TaskService

    svc = TaskService.from_settings(settings)
    yield svc
    await svc.close()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def bell_qasm() -> str:
    return BELL_QASM2
