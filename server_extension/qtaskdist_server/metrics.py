"""``GET {base_url}qtaskdist/api/metrics``: Prometheus text for a fleet operator.

Authenticated like the rest of the API (a scraper sends ``Authorization: token …``), and
for operators only (403 ``operator_only`` for anyone else), like the fleet in GET health.
Metric names and meanings: docs/metrics.md. Gauges about the fleet (tasks by status and
type, streams, workers, dead letters) come from one snapshot of PostgreSQL and Redis,
taken at most every ``QtaskdistApp.metrics_cache_s`` seconds however often it is scraped;
request latencies are observed by every API handler (``observe``). The server app holds
one :class:`ServerMetrics` (a registry per server, not per process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from tornado import web

from qtaskdist_jupyter.core.broker.keys import STREAMS
from qtaskdist_jupyter.core.errors import OperatorOnly
from qtaskdist_jupyter.core.metrics import REDIS_RETRIES
from qtaskdist_jupyter.core.models import TaskStatus
from qtaskdist_server.api.fleet import Snapshot
from qtaskdist_server.api.service import TaskService

from .base import API, QtaskdistHandler

# Seconds; a POST is milliseconds, a long poll up to its timeout (30 s).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics(Collector):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "qtaskdist_http_request_duration_seconds",
            "API requests by handler, method and status code; handler=tasks/batch with "
            "method=POST is the submit latency.",
            ["handler", "method", "code"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.snapshot = Snapshot()
        self._lock = asyncio.Lock()
        self.registry.register(self)

    async def refresh(self, service: TaskService, cache_s: float, stale_s: float) -> Snapshot:
        async with self._lock:  # concurrent scrapes share one look
            if self.snapshot.taken_s and time.monotonic() - self.snapshot.taken_s < cache_s:
                return self.snapshot
            self.snapshot = await service.fleet_snapshot(stale_s)
            return self.snapshot

    def observe(self, handler: web.RequestHandler) -> None:
        name = type(handler).__name__.removesuffix("Handler").lower() or "other"
        code = str(handler.get_status())
        self.latency.labels(name, handler.request.method, code).observe(
            handler.request.request_time()
        )

    def collect(self) -> Iterator[Any]:
        snap = self.snapshot
        up = GaugeMetricFamily(
            "qtaskdist_up", "1 if the last snapshot reached it, else 0.", labels=["component"]
        )
        up.add_metric(["database"], 0 if snap.tasks is None else 1)
        up.add_metric(["redis"], 0 if snap.streams is None else 1)
        yield up
        if snap.tasks is not None:
            tasks = GaugeMetricFamily(
                "qtaskdist_tasks", "Tasks by status and type.", labels=["task_type", "status"]
            )
            for task_type in STREAMS:
                for status in TaskStatus:
                    n = snap.tasks.get((task_type, status.value), 0)
                    tasks.add_metric([task_type, status.value], n)
            yield tasks
        if snap.streams is not None:
            length = GaugeMetricFamily(
                "qtaskdist_stream_length", "Entries in a task stream.", labels=["stream"]
            )
            pending = GaugeMetricFamily(
                "qtaskdist_stream_pending",
                "Entries delivered to a worker and not acknowledged yet.",
                labels=["stream"],
            )
            for task_type, stats in sorted(snap.streams.items()):
                length.add_metric([STREAMS[task_type]], stats["length"])
                pending.add_metric([STREAMS[task_type]], stats["pending"])
            yield length
            yield pending
        if snap.workers is not None:
            alive, known = snap.workers
            yield GaugeMetricFamily(
                "qtaskdist_workers_alive", "Workers with a fresh heartbeat.", value=alive
            )
            yield GaugeMetricFamily(
                "qtaskdist_workers_known", "Workers in the heartbeat table.", value=known
            )
        if snap.dead_letters is not None:
            yield GaugeMetricFamily(
                "qtaskdist_dead_letters", "Entries in stream:dead.", value=snap.dead_letters
            )
        yield CounterMetricFamily(
            "qtaskdist_redis_retries",
            "Redis commands sent again after a dropped connection or a timeout.",
            value=REDIS_RETRIES.value,
        )


class MetricsHandler(QtaskdistHandler):
    async def get(self) -> None:
        if not await self.is_operator():
            raise OperatorOnly("GET metrics is for qtaskdist operators (QtaskdistApp.admin_users)")
        metrics = self.app.metrics
        await metrics.refresh(self.service, self.app.metrics_cache_s, self.app.worker_stale_s)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics.registry))


metrics_handlers: list[tuple[str, type[QtaskdistHandler]]] = [(rf"{API}/metrics", MetricsHandler)]
