"""Prometheus metrics: the server's GET metrics and a worker's --metrics-port, parsed with
prometheus_client's own parser and checked against PostgreSQL's and Redis's counts after a
run with real workers; the Redis retry of a dropped pooled connection, counted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request

import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devtools.launcher import free_port
from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.broker.keys import DEAD_STREAM, GROUP, STREAMS, WORKERS_KEY
from qtaskdist_jupyter.core.config import libpq_url
from qtaskdist_jupyter.core.metrics import REDIS_RETRIES
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import simulate_spec, start_worker, wait_for
from tests.fixtures.workers import FAST, ROOT, worker_env

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """{(sample name, sorted labels): value}, via prometheus_client's parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def db_counts(database_url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute("select task_type, status, count(*) from tasks group by 1, 2")
        return {(t, s): n for t, s, n in rows}


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"metrics_cache_s": 0.0}}])
async def test_server_metrics_match_the_database_after_a_run(
    api, database_url, redis_url, sync_redis, worker_procs
) -> None:
    for _ in range(4):
        code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
        assert code == 201
    code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))  # stays pending
    assert code == 201
    code, body = await api(
        "POST", "tasks/batch", body={"tasks": [simulate_spec(BELL_QASM2)] * 3, "enqueue": True}
    )
    assert code == 201, body
    sync_redis.xadd(DEAD_STREAM, {"reason": "test"})  # one dead letter

    proc = start_worker(database_url, redis_url, "--burst", "--concurrency", "1")
    worker_procs.append(proc)
    assert await asyncio.to_thread(proc.wait, 120) == 0

    code, text = await api("GET", "metrics")
    assert code == 200, text
    samples = parse(text)
    counts = db_counts(database_url)
    assert counts == {("simulate", "completed"): 7, ("simulate", "pending"): 1}
    for task_type in STREAMS:
        for status in ("pending", "queued", "running", "completed", "failed", "cancelled"):
            got = value(samples, "qtaskdist_tasks", task_type=task_type, status=status)
            assert got == counts.get((task_type, status), 0), (task_type, status)
    for stream in STREAMS.values():
        pending = sum(g["pending"] for g in sync_redis.xinfo_groups(stream) if g["name"] == GROUP)
        assert value(samples, "qtaskdist_stream_length", stream=stream) == sync_redis.xlen(stream)
        assert value(samples, "qtaskdist_stream_pending", stream=stream) == pending
    assert value(samples, "qtaskdist_dead_letters") == 1
    assert value(samples, "qtaskdist_workers_known") == sync_redis.hlen(WORKERS_KEY)
    assert value(samples, "qtaskdist_up", component="database") == 1
    assert value(samples, "qtaskdist_up", component="redis") == 1
    # Submit latency: one observation per POST, labelled by handler and code.
    post = {"handler": "tasks", "method": "POST", "code": "201"}
    assert value(samples, "qtaskdist_http_request_duration_seconds_count", **post) == 5
    batch = {"handler": "batch", "method": "POST", "code": "201"}
    assert value(samples, "qtaskdist_http_request_duration_seconds_count", **batch) == 1
    assert value(samples, "qtaskdist_redis_retries_total") >= 0


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"metrics_cache_s": 3600.0}}])
async def test_server_metrics_are_cached_and_authenticated(api) -> None:
    code, text = await api("GET", "metrics")
    assert code == 200
    before = value(parse(text), "qtaskdist_tasks", task_type="simulate", status="pending")
    code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 201
    code, text = await api("GET", "metrics")
    # The count query ran once: a scrape storm costs PostgreSQL nothing more.
    assert value(parse(text), "qtaskdist_tasks", task_type="simulate", status="pending") == before
    code, _t = await api("GET", "metrics", headers={"Authorization": ""})
    assert code == 403


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return parse(resp.read().decode())


async def test_worker_metrics_port(service, settings, worker_procs) -> None:
    from tests.fixtures.workers import submit

    port = free_port()
    cmd = [sys.executable, "-m", "qtaskdist_worker", *FAST]
    cmd += ["--metrics-port", str(port), "--metrics-addr", "127.0.0.1"]
    proc = subprocess.Popen(cmd, env=worker_env(settings), cwd=ROOT)
    worker_procs.append(proc)
    good = {"circuit": BELL_QASM2, "shots": 50}
    ids = await submit(service, "simulate", [good, good, good])

    async def done() -> bool:
        rows = await service.store.get_many(ids)
        return all(r["status"] == "completed" for r in rows)

    await wait_for(done, 90, "three completions")

    def scraped() -> Samples:
        return _scrape(port)

    samples = await asyncio.to_thread(scraped)
    completed = {"task_type": "simulate", "outcome": "completed"}
    assert value(samples, "qtaskdist_worker_tasks_total", **completed) == 3
    assert value(samples, "qtaskdist_worker_task_run_seconds_count", task_type="simulate") == 3
    assert (
        value(samples, "qtaskdist_worker_task_queue_wait_seconds_count", task_type="simulate") == 3
    )
    assert value(samples, "qtaskdist_worker_job_processes") == 1
    assert value(samples, "qtaskdist_worker_job_processes_busy") == 0
    assert ("qtaskdist_worker_fence_refusals_total", (("task_type", "simulate"),)) not in samples


def test_worker_metrics_port_taken_is_one_line(settings) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "qtaskdist_worker", *FAST, "--burst"]
        cmd += ["--metrics-port", str(port), "--metrics-addr", "127.0.0.1"]
        done = subprocess.run(
            cmd, env=worker_env(settings), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert done.stderr.startswith(f"qtaskdist-worker: cannot serve metrics on 127.0.0.1:{port}")
    assert "Traceback" not in done.stderr


async def test_dropped_pooled_connection_is_retried_and_counted(redis_url: str) -> None:
    broker = Broker.from_url(redis_url)
    try:
        await broker.ping()  # one pooled connection now
        conn_id = await broker.redis.client_id()
        admin = redis.Redis.from_url(redis_url)
        try:
            assert admin.client_kill_filter(_id=conn_id) == 1  # Redis drops it
        finally:
            admin.close()
        before = REDIS_RETRIES.value
        await broker.ping()  # would be "Redis unreachable" without the retry
        assert REDIS_RETRIES.value > before
    finally:
        await broker.close()


async def test_worker_metrics_count_a_result_the_database_refused_as_failed(
    service, settings, worker_procs, tmp_path
) -> None:
    """A provider's counts with a NUL character (jsonb refuses them): the task failed, and
    the worker's counter says failed, not completed; the next task completed."""
    from tests.fixtures.fake_qbraid import FakeQbraid, sdk_env
    from tests.fixtures.workers import submit

    port = free_port()
    with FakeQbraid(api_key="k", polls_to_complete=1) as fake:
        fake.corrupt_counts = True
        (tmp_path / ".qbraid").mkdir()
        extra = {**sdk_env(fake, tmp_path), "QBRAID_API_KEY": "k"}
        cmd = [sys.executable, "-m", "qtaskdist_worker", *FAST, "--task-types", "backend_run"]
        cmd += ["--metrics-port", str(port), "--metrics-addr", "127.0.0.1"]
        proc = subprocess.Popen(cmd, env=worker_env(settings, extra), cwd=ROOT)
        worker_procs.append(proc)
        ids = await submit(
            service,
            "backend_run",
            [{"circuit": BELL_QASM2, "device_id": "qbraid:qbraid:sim:qir-sv", "shots": 10},
             {"circuit": BELL_QASM2, "device_id": "local", "shots": 10}],
        )  # fmt: skip

        async def ended() -> bool:
            rows = await service.store.get_many(ids)
            return all(r["status"] in ("completed", "failed") for r in rows)

        await wait_for(ended, 90, "both tasks ended")
        samples = await asyncio.to_thread(_scrape, port)
    statuses = [r["status"] for r in await service.store.get_many(ids)]
    assert statuses == ["failed", "completed"]
    by = {"task_type": "backend_run"}
    assert value(samples, "qtaskdist_worker_tasks_total", **by, outcome="failed") == 1
    assert value(samples, "qtaskdist_worker_tasks_total", **by, outcome="completed") == 1
