"""``qtaskdist-worker``: the standalone worker's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from qtaskdist_jupyter.core.broker.keys import STREAMS, TYPE_OF_STREAM
from qtaskdist_jupyter.core.config import load_settings
from qtaskdist_jupyter.core.embedded import services as embedded
from qtaskdist_jupyter.core.errors import ConfigError, QtaskdistError
from qtaskdist_jupyter.core.kinds import BACKEND, KINDS

from . import metrics
from .worker import Worker, WorkerOptions


def _task_types(text: str) -> list[str]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name = TYPE_OF_STREAM.get(part, part)  # a stream name works too
        if name not in STREAMS:
            raise argparse.ArgumentTypeError(
                f"unknown task type {part!r}; expected some of {', '.join(STREAMS)}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise argparse.ArgumentTypeError("no task types given")
    return out


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse ``type``: ``kind(text)`` (int or float), refused unless above 0."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value

    return parse


def _memory_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--job-memory-mb",
        type=_positive(int),
        default=None,
        help="address space a job process may add to its start-up size (default: "
        "QTASKDIST_MAX_TASK_MEMORY_BYTES + QTASKDIST_MAX_RESULT_BYTES + 512 MiB)",
    )


def build_parser() -> argparse.ArgumentParser:
    d = WorkerOptions()
    p = argparse.ArgumentParser(
        prog="qtaskdist-worker",
        description=f"Run qtaskdist tasks ({', '.join(KINDS)}) from Redis.",
    )
    _work_arguments(p, d)
    _timing_arguments(p, d)
    _service_arguments(p)
    return p


def _work_arguments(p: argparse.ArgumentParser, d: WorkerOptions) -> None:
    """What the worker takes on and how: task types, processes, batches, takeovers, burst."""
    p.add_argument(
        "--task-types",
        "--streams",
        type=_task_types,
        default=list(STREAMS),
        help="comma-separated task types or stream names (default: all)",
    )
    p.add_argument(
        "--concurrency",
        "-c",
        type=_positive(int),
        default=d.concurrency,
        help="job processes for simulate/convert (default: one per usable core, at most "
        "4: %(default)s here)",
    )
    p.add_argument("--name", default=None, help="consumer name (default host-pid)")
    p.add_argument(
        "--batch-size",
        type=_positive(int),
        default=d.batch_size,
        help="XREADGROUP COUNT and largest Aer batch (default %(default)s)",
    )
    p.add_argument(
        "--visibility-timeout-s",
        type=_positive(float),
        default=d.visibility_timeout_s,
        help="idle time after which another worker takes an entry over",
    )
    p.add_argument(
        "--burst", action="store_true", help="drain the queued tasks (and due retries), then exit 0"
    )


def _timing_arguments(p: argparse.ArgumentParser, d: WorkerOptions) -> None:
    """Shutdown, retries, reconciling, time limits and provider polls."""
    p.add_argument(
        "--grace-s",
        type=_positive(float),
        default=d.grace_s,
        help="on SIGTERM, time to finish tasks in flight before releasing them",
    )
    p.add_argument(
        "--retry-base-s",
        type=_positive(float),
        default=d.retry_base_s,
        help="first retry delay; doubles per retry, jittered (default 1)",
    )
    p.add_argument("--retry-cap-s", type=_positive(float), default=d.retry_cap_s)
    p.add_argument("--reconcile-interval-s", type=_positive(float), default=d.reconcile_interval_s)
    p.add_argument(
        "--threads-per-job",
        type=_positive(int),
        default=d.threads_per_job,
        help="Aer/OpenMP threads per job process (default 1)",
    )
    p.add_argument(
        "--max-time-limit-s",
        type=_positive(float),
        default=None,
        help="cap on any task's time limit (default QTASKDIST_MAX_TIME_LIMIT_S)",
    )
    p.add_argument(
        "--backend-concurrency",
        type=_positive(int),
        default=d.backend_concurrency,
        help=f"{BACKEND.name} tasks polled at once (default %(default)s)",
    )
    p.add_argument(
        "--poll-interval-s",
        type=_positive(float),
        default=d.poll_interval_s,
        help="longest pause between provider status polls",
    )


def _service_arguments(p: argparse.ArgumentParser) -> None:
    """Metrics, memory limits, the backing services and logging."""
    p.add_argument(
        "--metrics-port",
        type=_positive(int),
        default=None,
        help="serve Prometheus metrics on this port (default: off; docs/metrics.md)",
    )
    p.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        help="address of the metrics port (default %(default)s: this machine only; "
        "0.0.0.0: all interfaces)",
    )
    _memory_arguments(p)
    p.add_argument("--database-url", default=None, help="overrides DATABASE_URL")
    p.add_argument("--redis-url", default=None, help="overrides REDIS_URL")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def options_from(args: argparse.Namespace) -> WorkerOptions:
    opts = WorkerOptions(
        task_types=args.task_types,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        visibility_timeout_s=args.visibility_timeout_s,
        burst=args.burst,
        grace_s=args.grace_s,
        retry_base_s=args.retry_base_s,
        retry_cap_s=args.retry_cap_s,
        reconcile_interval_s=args.reconcile_interval_s,
        threads_per_job=args.threads_per_job,
        max_time_limit_s=args.max_time_limit_s,
        backend_concurrency=args.backend_concurrency,
        poll_interval_s=args.poll_interval_s,
        job_memory_mb=args.job_memory_mb,
    )
    if args.name:
        opts.name = args.name
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our loggers at the asked level; libraries (qiskit logs every transpiler pass at
    # INFO) stay at WARNING unless DEBUG is asked for.
    logging.basicConfig(
        level="DEBUG" if args.log_level == "DEBUG" else "WARNING",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("qtaskdist_worker", "qtaskdist_jupyter"):
        logging.getLogger(name).setLevel(args.log_level)
    try:
        settings = load_settings()
        settings = settings.with_urls(
            args.database_url or settings.database_url, args.redis_url or settings.redis_url
        )
        if settings.embedded:
            # Only a single-machine setup lacks URLs; join (or start) the embedded services.
            settings = embedded.resolve_settings(settings)
        worker = Worker(settings, options_from(args))
        if args.metrics_port:
            try:
                metrics.serve(worker, args.metrics_port, args.metrics_addr)
            except OSError as exc:
                where = f"{args.metrics_addr}:{args.metrics_port}"
                raise ConfigError(f"cannot serve metrics on {where}: {exc}") from exc
        return asyncio.run(worker.run())
    except ConfigError as exc:
        print(f"qtaskdist-worker: {exc.message}", file=sys.stderr)
        return 2
    except QtaskdistError as exc:
        print(f"qtaskdist-worker: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
