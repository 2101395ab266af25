"""The worker's Prometheus metrics (``--metrics-port``, off by default; docs/metrics.md).

Counting is always on and costs a dict update per task; only the HTTP endpoint is optional.
The settle code calls :func:`task_finished` and :func:`fence_refused`; the gauges of job
processes are read from the running worker at scrape time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from qtaskdist_jupyter.core.metrics import REDIS_RETRIES

if TYPE_CHECKING:  # worker.py imports this module (through settle.py)
    from .worker import Worker

# Seconds; simulate tasks run from milliseconds (a Bell circuit) to the time limit.
RUN_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)

REGISTRY = CollectorRegistry(auto_describe=True)
TASKS = Counter(
    "qtaskdist_worker_tasks",
    "Tasks this worker ended, by task type and outcome (completed, failed, retried).",
    ["task_type", "outcome"],
    registry=REGISTRY,
)
RUN_TIME = Histogram(
    "qtaskdist_worker_task_run_seconds",
    "Run time of a task's attempt on this worker (a batch's time, for batched tasks).",
    ["task_type"],
    buckets=RUN_BUCKETS_S,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "qtaskdist_worker_task_queue_wait_seconds",
    "From the task's creation to its start on this worker.",
    ["task_type"],
    buckets=WAIT_BUCKETS_S,
    registry=REGISTRY,
)
FENCE_REFUSALS = Counter(
    "qtaskdist_worker_fence_refusals",
    "Late completions the attempt fence refused (the task was taken over or cancelled "
    "meanwhile); the worker dropped them.",
    ["task_type"],
    registry=REGISTRY,
)

_OUTCOMES = {"completed": "completed", "failed": "failed", "retry": "retried"}


@functools.cache
def _series(task_type: str, outcome: str) -> tuple[Any, Any, Any]:
    # labels() builds and looks up its key on every call; the settle path ends thousands
    # of tasks a second, and the label sets are few (task types x outcomes).
    return (
        TASKS.labels(task_type, _OUTCOMES.get(outcome, outcome)),
        RUN_TIME.labels(task_type),
        QUEUE_WAIT.labels(task_type),
    )


def task_finished(
    task_type: str, outcome: str, run_time_s: float, queue_wait_s: float | None
) -> None:
    """One attempt ended: ``outcome`` is profile()'s result_kind (completed/failed/retry)."""
    tasks, run_time, queue_wait = _series(task_type, outcome)
    tasks.inc()
    run_time.observe(run_time_s)
    if queue_wait_s is not None and queue_wait_s >= 0:
        queue_wait.observe(queue_wait_s)


def fence_refused(task_type: str, n: int = 1) -> None:
    FENCE_REFUSALS.labels(task_type).inc(n)


class _Live(Collector):
    """Gauges read from the worker when scraped."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        pool = self.worker.dispatcher.pool
        size = pool.size if pool is not None else 0
        busy = size - pool.idle if pool is not None else 0
        yield GaugeMetricFamily(
            "qtaskdist_worker_job_processes", "Job processes (--concurrency).", value=size
        )
        yield GaugeMetricFamily(
            "qtaskdist_worker_job_processes_busy", "Job processes running a job now.", value=busy
        )
        yield GaugeMetricFamily(
            "qtaskdist_worker_tasks_in_flight",
            "Tasks claimed and not yet settled (running or prefetched).",
            value=len(self.worker.inflight),
        )
        yield CounterMetricFamily(
            "qtaskdist_redis_retries",
            "Redis commands sent again after a dropped connection or a timeout.",
            value=REDIS_RETRIES.value,
        )


def serve(worker: Worker, port: int, addr: str = "0.0.0.0") -> None:
    """Expose REGISTRY and the worker's gauges on ``http://addr:port/metrics``."""
    REGISTRY.register(_Live(worker))
    start_http_server(port, addr=addr, registry=REGISTRY)
