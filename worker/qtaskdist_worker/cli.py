"""``qtaskdist-worker``: the standalone worker's command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

from qtaskdist_jupyter.core.broker.keys import STREAMS, TYPE_OF_STREAM
from qtaskdist_jupyter.core.config import bound, load_options, load_settings
from qtaskdist_jupyter.core.embedded import services as embedded
from qtaskdist_jupyter.core.errors import ConfigError, QtaskdistError
from qtaskdist_jupyter.core.kinds import KINDS
from qtaskdist_jupyter.core.options import FIELDS, help_of, on

from . import metrics
from .worker import Worker, WorkerOptions

SHORT_FLAGS = {"concurrency": ("-c",)}


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


def _bounded(kind: type[int] | type[float], name: str) -> Callable[[str], Any]:
    """An argparse ``type`` for field ``name``: ``kind(text)`` within the field's bound."""
    limit = bound(name)

    def parse(text: str) -> Any:
        value = kind(text)
        if limit == ("gt", 0) and value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        if limit and (value <= limit[1] if limit[0] == "gt" else value < limit[1]):
            raise argparse.ArgumentTypeError(f"{text} must be at least {limit[1]:g}")
        return value

    return parse


def _add_option(p: argparse.ArgumentParser, name: str, value: Any) -> None:
    """The flag of settings field ``name`` (core/options.py): ``--name-with-dashes``, its
    type, bound and help from the field; ``value`` (the environment's, else the field's
    default) is the flag's default."""
    info = FIELDS[name]
    flags = [f"--{name.replace('_', '-')}", *SHORT_FLAGS.get(name, ())]
    help_ = help_of(name).replace("%", "%%")
    kind = next(
        (a for a in (info.annotation, *get_args(info.annotation)) if a in (int, float)), None
    )
    if info.annotation is bool:
        p.add_argument(*flags, action="store_true", default=value, help=help_)
    elif get_origin(info.annotation) is Literal:
        p.add_argument(*flags, choices=get_args(info.annotation), default=value, help=help_)
    elif kind is not None:
        p.add_argument(*flags, type=_bounded(kind, name), default=value, help=help_)
    else:
        p.add_argument(*flags, default=value, help=help_)


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The flags: ``--task-types`` (its values are the task kinds' registry) and one per
    settings field tagged ``cli``, defaulting to the environment (``env``)."""
    options = load_options(env)
    p = argparse.ArgumentParser(
        prog="qtaskdist-worker",
        description=f"Run qtaskdist tasks ({', '.join(KINDS)}) from Redis.",
    )
    p.add_argument(
        "--task-types",
        "--streams",
        type=_task_types,
        default=list(STREAMS),
        help="comma-separated task types or stream names (default: all)",
    )
    for name in on("cli"):
        _add_option(p, name, getattr(options, name))
    return p


def options_from(args: argparse.Namespace) -> WorkerOptions:
    """The worker's options: every WorkerOptions field the parsed flags hold; one left
    ``None`` or empty (``--concurrency``, ``--name``) takes WorkerOptions' own default."""
    known = {f.name for f in dataclasses.fields(WorkerOptions)}
    given = {n: getattr(args, n) for n in on("cli") if n in known}
    given = {n: v for n, v in given.items() if v is not None and v != ""}
    return WorkerOptions(task_types=args.task_types, **given)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ConfigError as exc:
        print(f"qtaskdist-worker: {exc.message}", file=sys.stderr)
        return 2
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
