"""The benchmark harness runs: B1's bulk path with N=200 against an in-process server.

Not a benchmark (no timing is asserted); it proves the harness's request, the bulk
endpoint and the queue agree, so ``python -m benchmarks`` doesn't rot unnoticed.
"""

from __future__ import annotations

import psycopg
import redis

from benchmarks.cases import bulk_submit_rate
from qtaskdist_jupyter.core.config import libpq_url


async def test_b1_bulk_path_runs(api, database_url: str, redis_url: str) -> None:
    n = 200
    seen: list[int] = []
    sync_redis = redis.Redis.from_url(redis_url)

    async def post(body: bytes) -> dict:
        status, got = await api("POST", "tasks/batch", raw=body)
        assert status == 201, got
        return got

    def clear() -> None:
        # Every rep really wrote n queued rows and n stream entries before we empty them.
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            (queued,) = conn.execute("SELECT count(*) FROM tasks WHERE status='queued'").fetchone()
            seen.append(queued)
            conn.execute("TRUNCATE tasks CASCADE")  # and their stored result arrays
        assert sync_redis.xlen("stream:simulate") == n
        sync_redis.flushdb()

    try:
        out = await bulk_submit_rate(post, clear, n, shots=100, reps=2)
    finally:
        sync_redis.close()
    assert seen == [n, n]
    assert out["n"] == n and len(out["wall_s"]) == 2 and out["tasks_per_s"] > 0
