"""Exactly-once checks and the printed figures shared by the fleet fault tests."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any


def completions_in_history(row: dict[str, Any]) -> int:
    attempts = (row.get("meta_data") or {}).get("attempts") or []
    return sum(1 for a in attempts if a.get("outcome") == "completed")


def check_rows(rows: list[dict[str, Any]], shots: dict[Any, int] | None = None) -> int:
    """Every row completed once, with a correct result; returns the completions."""
    assert rows, "no rows"
    bad = [(r["task_id"], r["status"]) for r in rows if r["status"] != "completed"]
    assert not bad, f"{len(bad)} tasks not completed (lost): {bad[:5]}"
    twice = [r["task_id"] for r in rows if completions_in_history(r) != 1]
    assert not twice, f"double (or missing) completed entries in attempts: {twice[:5]}"
    for r in rows:
        want = (shots or {}).get(r["task_id"], r["payload"]["shots"])
        counts = r["result"]["counts"]
        assert sum(counts.values()) == want, (r["task_id"], counts)
        assert all(len(k) == len(next(iter(counts))) for k in counts), counts
    return len(rows)


def completion_event_counts(sync_redis: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _eid, fields in sync_redis.xrange("stream:events"):
        ev = json.loads(fields["m"])
        if ev["status"] == "completed":
            seen[ev["task_id"]] += 1
    return seen


async def assert_exactly_once(
    service: Any, sync_redis: Any, ids: list[uuid.UUID], shots: dict[Any, int] | None = None
) -> dict[str, int]:
    rows = await service.store.get_many(ids)
    assert len(rows) == len(ids), "rows missing"
    completions = check_rows(rows, shots)
    events = completion_event_counts(sync_redis)
    many = {t: n for t, n in events.items() if n > 1}
    assert not many, f"completed published more than once: {list(many.items())[:5]}"
    return {"completions": completions}


def figures(case: str, **numbers: Any) -> None:
    """One line per case in the test output (pytest -s or -rP shows it)."""
    text = ", ".join(
        f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items()
    )
    print(f"\nFIGURES {case}: {text}")
