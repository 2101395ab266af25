"""B8, REST load without false alarms: ``python -m benchmarks.load [--clients 20]``.

``--clients`` threads, each with its own keep-alive HTTP client, loop for ``--duration-s``
over one verb mix against one real server and one real worker: ``POST tasks`` (a Bell
circuit, enqueued), ``GET tasks/{id}`` of that task, ``GET tasks?limit=50`` (the list). One
more client follows ``GET events`` long polls the whole time. Every answer other than the
expected status, and every transport error, is an error; the bar is 0. Printed and written
to ``benchmarks/results/b8-<UTC>.json``: requests, requests/s, p50/p99 per verb, errors
(the first few verbatim), Redis retries the server made (from its metrics), and whether the
worker finished every submitted task.

Uses the benchmark database and Redis DB 14 like ``python -m benchmarks`` (and drops them
first); run it under ``flock /tmp/qtd-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .env import BELL, BenchConfig, Fleet, clear_state, machine_info, pg, reset_database
from .env import start_server as start_bench_server

RESULTS = Path(__file__).resolve().parent / "results"
MAX_REQUESTS_PER_CLIENT = 1_000_000  # the loop is bounded by time; this bounds it by count
LONG_POLL_S = 5.0


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency_s: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.error_count = 0
        self.task_ids: list[str] = []

    def record(self, verb: str, started: float, ok: bool, what: str = "") -> None:
        took = time.perf_counter() - started
        with self.lock:
            self.latency_s[verb].append(took)
            if not ok:
                self.error_count += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{verb}: {what}")


def _call(rec: Recorder, verb: str, expect: int, send: Any) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        r = send()
    except httpx.HTTPError as exc:
        rec.record(verb, t0, False, f"{type(exc).__name__}: {exc}")
        return None
    ok = r.status_code == expect
    rec.record(verb, t0, ok, "" if ok else f"{r.status_code} {r.text[:300]}")
    return r if ok else None


def client_loop(base: str, headers: dict[str, str], deadline: float, rec: Recorder) -> None:
    spec = {"task_type": "simulate", "payload": {"circuit": BELL, "shots": 100}, "enqueue": True}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= deadline:
                return
            r = _call(rec, "POST tasks", 201, lambda: http.post("tasks", json=spec))
            if r is not None:
                task_id = r.json()["task_id"]
                with rec.lock:
                    rec.task_ids.append(task_id)
                _call(rec, "GET task", 200, lambda t=task_id: http.get(f"tasks/{t}"))
            _call(rec, "GET list", 200, lambda: http.get("tasks", params={"limit": 50}))


def reader_loop(base: str, headers: dict[str, str], deadline: float, rec: Recorder) -> int:
    """Follows the events feed like a live table; returns the events it saw."""
    seen = 0
    cursor: str | None = None
    with httpx.Client(base_url=base, headers=headers, timeout=LONG_POLL_S + 30) as http:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            left = deadline - time.monotonic()
            if left <= 0:
                return seen
            params: dict[str, Any] = {"timeout_s": round(min(LONG_POLL_S, left), 3)}
            if cursor:
                params["after"] = cursor
            r = _call(rec, "GET events", 200, lambda p=params: http.get("events", params=p))
            if r is not None:
                body = r.json()
                cursor = body["cursor"]
                seen += len(body["events"])
    return seen


def pct(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def redis_retries(base: str, headers: dict[str, str]) -> float | None:
    r = httpx.get(base + "metrics", headers=headers, timeout=30)
    if r.status_code != 200:
        return None
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "qtaskdist_redis_retries_total":
                return s.value
    return None


def run(clients: int, duration_s: float, drain_s: float, cfg: BenchConfig) -> dict[str, Any]:
    reset_database(cfg)
    clear_state(cfg)
    root = Path(tempfile.mkdtemp(prefix="qtd-b8-"))
    server = start_bench_server(cfg, root)
    base = server.url + "qtaskdist/api/"
    headers = {"Authorization": f"token {server.token}"}
    rec = Recorder()
    try:
        with Fleet(cfg).start(1):
            deadline = time.monotonic() + duration_s
            threads = [
                threading.Thread(target=client_loop, args=(base, headers, deadline, rec))
                for _ in range(clients)
            ]
            events_seen: list[int] = []
            reader = threading.Thread(
                target=lambda: events_seen.append(reader_loop(base, headers, deadline, rec))
            )
            t0 = time.monotonic()
            for t in [*threads, reader]:
                t.start()
            for t in [*threads, reader]:
                t.join()
            wall_s = time.monotonic() - t0
            # Did the worker finish every task the load created (nothing lost)?
            drain_deadline = time.monotonic() + drain_s
            with pg(cfg) as conn:
                while True:
                    left = conn.execute(
                        "select count(*) from tasks where status <> 'completed'"
                    ).fetchone()[0]
                    if left == 0 or time.monotonic() > drain_deadline:
                        break
                    time.sleep(0.5)
                total = conn.execute("select count(*) from tasks").fetchone()[0]
            retries = redis_retries(base, headers)
    finally:
        server.stop()
    verbs = {}
    for verb, lat in sorted(rec.latency_s.items()):
        verbs[verb] = {
            "requests": len(lat),
            "p50_ms": round(pct(lat, 50) * 1000, 1),
            "p99_ms": round(pct(lat, 99) * 1000, 1),
        }
    requests = sum(v["requests"] for v in verbs.values())
    return {
        "started": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "clients": clients,
        "long_poll_readers": 1,
        "duration_s": duration_s,
        "wall_s": round(wall_s, 2),
        "requests": requests,
        "requests_per_s": round(requests / wall_s, 1),
        "verbs": verbs,
        "errors": rec.error_count,
        "first_errors": rec.errors,
        "tasks_created": len(rec.task_ids),
        "tasks_in_db": total,
        "tasks_not_completed_after_drain": left,
        "drain_s": drain_s,
        "events_seen": events_seen[0] if events_seen else None,
        "redis_retries": retries,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--drain-s", type=float, default=120.0, help="wait for the worker after")
    p.add_argument("--db-name", default=BenchConfig.db_name)
    p.add_argument("--redis-url", default=BenchConfig.redis_url)
    args = p.parse_args(argv)
    cfg = BenchConfig(db_name=args.db_name, redis_url=args.redis_url)
    out = run(args.clients, args.duration_s, args.drain_s, cfg)
    print(
        f"B8: {out['clients']} clients + 1 long-poll reader, {out['wall_s']} s: "
        f"{out['requests']} requests, {out['requests_per_s']} req/s, {out['errors']} errors"
    )
    for verb, v in out["verbs"].items():
        p50, p99 = v["p50_ms"], v["p99_ms"]
        print(f"  {verb:11} {v['requests']:7d}  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms")
    print(
        f"  tasks created {out['tasks_created']}, not completed after drain "
        f"{out['tasks_not_completed_after_drain']}, redis retries {out['redis_retries']}"
    )
    for e in out["first_errors"]:
        print(f"  error: {e}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"b8-{stamp}.json").write_text(json.dumps(out, indent=2))
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
