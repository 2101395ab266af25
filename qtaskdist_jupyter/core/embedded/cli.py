"""``qtaskdist`` command line: ``services start|stop|status``, ``db upgrade``, ``gc``,
``service`` (the shared API host for a team), ``hash-token`` and ``redis-acl``.

``services start`` pins the embedded pair (it runs until ``services stop``); every other
process that uses it holds it only while it runs (qtaskdist_jupyter/core/embedded/leases.py).

Subcommands live in one table, :data:`COMMANDS`: a key of one or two words
(``"db upgrade"``) maps to ``(add_arguments, run)``. ``run(args, settings)`` returns the exit
code.
Errors from the qtaskdist tree print as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import importlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from qtaskdist_jupyter.core.config import Settings, load_service_settings, load_settings
from qtaskdist_jupyter.core.embedded.services import (
    ensure_services,
    resolve_settings,
    services_status,
    stop_services,
)
from qtaskdist_jupyter.core.errors import ConfigError, QtaskdistError
from qtaskdist_jupyter.core.retention import GC_BATCH, gc_due

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace, Settings], int]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


# ---------------------------------------------------------------- services
def _services_start_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        action="store_true",
        help="print 'export VAR=...' lines, for eval $(qtaskdist services start --env)",
    )


def _services_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start (or join) the embedded PostgreSQL + Valkey, keep them until `services stop`."""
    # Pinned: the pair outlives this command (its processes come and go).
    svc = ensure_services(settings.home, pin=True)
    prefix = "export " if args.env else ""
    print(f"{prefix}DATABASE_URL={shlex.quote(svc.database_url)}")
    print(f"{prefix}REDIS_URL={shlex.quote(svc.redis_url)}")
    # The URLs alone go to stdout (eval-able); what happened goes to stderr.
    verb = "started" if svc.started_now else "already running"
    print(f"# embedded services {verb} under {svc.home}", file=sys.stderr)
    return 0


def _services_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop the embedded servers whoever holds them (their data stays)."""
    holders = [h for h in services_status(settings.home)["holders"] if h["alive"]]
    stopped = stop_services(settings.home)
    print(f"embedded services {'stopped' if stopped else 'were not running'} ({settings.home})")
    for h in holders:
        if not h["pinned"]:
            print(f"  pid {h['pid']} held them and now has none: {h['command']}")
    return 0


def _services_status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def _services_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show whether the embedded servers run and who holds them (exit 0 if both run)."""
    status = services_status(settings.home)
    up = status["postgres"]["running"] and status["valkey"]["running"]
    if args.json:
        print(json.dumps(status, indent=2))
        return 0 if up else 1
    print(f"home: {status['home']}")
    for name in ("postgres", "valkey"):
        s = status[name]
        state = f"running (pid {s['pid']})" if s["running"] else "stopped"
        print(f"{name:9} {state:22} {s['url'] or '-'}  log {s['log']}")
    holders = status["holders"]
    print(f"holders:  {len(holders) or 'none'}")
    for h in holders:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["since"]))
        who = "pinned by" if h["pinned"] else f"pid {h['pid']}{'' if h['alive'] else ' (dead)'}"
        print(f"  {who:18} since {since}  {h['command']}")
    return 0 if up else 1


# ---------------------------------------------------------------- db
def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the Alembic migrations (starting the embedded services if no URL is set)."""
    from qtaskdist_jupyter.core.migrate import upgrade  # alembic: only this command needs it

    settings = resolve_settings(settings)
    assert settings.database_url is not None
    upgrade(settings.database_url)
    print("database schema is up to date")
    return 0


# ---------------------------------------------------------------- redis-acl
def _redis_acl_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--service-password-file",
        type=Path,
        required=True,
        help="file holding the qtaskdist-service user's password (first line)",
    )
    parser.add_argument(
        "--worker-password-file",
        type=Path,
        required=True,
        help="file holding the qtaskdist-worker user's password (first line)",
    )
    parser.add_argument(
        "--format",
        choices=("aclfile", "setuser"),
        default="aclfile",
        help="aclfile: lines for Redis's aclfile; setuser: ACL SETUSER commands for redis-cli",
    )


def _redis_acl(args: argparse.Namespace, settings: Settings) -> int:
    """Print the Redis ACL users qtaskdist-service and qtaskdist-worker (passwords hashed)."""
    from qtaskdist_jupyter.core.broker import acl

    render = acl.acl_file_line if args.format == "aclfile" else acl.setuser_command
    files = {
        acl.SERVICE_USER: args.service_password_file,
        acl.WORKER_USER: args.worker_password_file,
    }
    # Every file read and every password checked before anything is printed.
    lines = [render(acl.USERS[name], _first_line_of(path)) for name, path in files.items()]
    print("\n".join(lines))
    return 0


def _first_line_of(path: Path) -> str:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from exc
    return lines[0] if lines else ""


# ---------------------------------------------------------------- service
def _service_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", help="address to listen on (QTASKDIST_SERVICE_BIND)")
    parser.add_argument("--port", type=int, help="port to listen on (QTASKDIST_SERVICE_PORT)")
    parser.add_argument("--prefix", help="URL prefix (JUPYTERHUB_SERVICE_PREFIX, else /)")
    parser.add_argument("--auth", choices=["hub", "tokens"], help="QTASKDIST_SERVICE_AUTH")
    parser.add_argument("--tokens-file", type=Path, help="QTASKDIST_SERVICE_TOKENS_FILE")


def _service(args: argparse.Namespace, settings: Settings) -> int:
    """Run the shared API service for a team (needs DATABASE_URL and REDIS_URL)."""
    if settings.embedded:
        raise ConfigError(
            "qtaskdist service needs DATABASE_URL and REDIS_URL (it starts no embedded "
            "services): point them at the team's PostgreSQL and Redis"
        )
    s = load_service_settings()
    given = {
        "bind": args.bind,
        "port": args.port,
        "auth": args.auth,
        "tokens_file": args.tokens_file,
        "prefix": "/" + args.prefix.strip("/") + "/" if args.prefix else None,
    }
    s = dataclasses.replace(s, **{k: v for k, v in given.items() if v is not None})
    # The server package is not core's to import statically (the import contract): the
    # service lives beside the extension, in qtaskdist_server.
    app = importlib.import_module("qtaskdist_server.service_host.app")
    return int(app.run(settings, s))


def _hash_token_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="the user name the token stands for")
    parser.add_argument("--admin", action="store_true", help="an operator (fleet detail)")
    parser.add_argument(
        "--stdin", action="store_true", help="hash a token read from stdin instead of a new one"
    )


def _hash_token(args: argparse.Namespace, settings: Settings) -> int:
    """Print a tokens-file line for a new token (the token itself goes to stderr)."""
    tokens = importlib.import_module("qtaskdist_server.service_host.tokens")
    if not tokens.USER_NAME.fullmatch(args.user):
        raise ConfigError(f"--user {args.user[:40]!r} is not [A-Za-z0-9._@+-]")
    if args.stdin:
        token = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass()
    else:
        token = tokens.new_token()
        note = f"# token for {args.user} (give it to them; it is not stored): {token}"
        print(note, file=sys.stderr)
    if len(token) < 16:
        raise ConfigError("a token must be at least 16 characters")
    print(f"{tokens.hash_token(token)} {args.user}{' admin' if args.admin else ''}")
    return 0


# ---------------------------------------------------------------- gc
def _gc_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than-s",
        type=float,
        default=None,
        help="delete finished tasks older than this (default QTASKDIST_RETENTION_S)",
    )
    parser.add_argument(
        "--batch", type=int, default=GC_BATCH, help="rows per DELETE (default %(default)s)"
    )


def _gc(args: argparse.Namespace, settings: Settings) -> int:
    """Delete finished tasks older than the retention age, with their arrays."""
    import asyncio

    from qtaskdist_jupyter.core.queue import purge
    from qtaskdist_jupyter.core.store.store import TaskStore

    age_s = settings.limits.retention_s if args.older_than_s is None else args.older_than_s
    if args.batch < 1 or age_s < 0:
        raise ConfigError("--batch must be positive and --older-than-s at least 0")
    if not gc_due(age_s):
        print("retention is off (QTASKDIST_RETENTION_S=0): nothing deleted")
        return 0
    settings = resolve_settings(settings)
    assert settings.database_url is not None

    async def run() -> int:
        store = TaskStore.from_url(settings.database_url or "", pool_size=1)
        try:
            return await purge(store, age_s, batch=args.batch)
        finally:
            await store.close()

    print(f"deleted {asyncio.run(run())} finished tasks older than {age_s:g} s")
    return 0


# ---------------------------------------------------------------- the table
# Add a subcommand here: "word" or "group action" -> (add_arguments, run).
COMMANDS: dict[str, tuple[AddArguments, Run]] = {
    "services start": (_services_start_args, _services_start),
    "services stop": (_no_arguments, _services_stop),
    "services status": (_services_status_args, _services_status),
    "db upgrade": (_no_arguments, _db_upgrade),
    "redis-acl": (_redis_acl_args, _redis_acl),
    "service": (_service_args, _service),
    "hash-token": (_hash_token_args, _hash_token),
    "gc": (_gc_args, _gc),
}


def _first_line(doc: str | None) -> str | None:
    return doc.strip().splitlines()[0] if doc and doc.strip() else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qtaskdist",
        description="qtaskdist: embedded services, database tools, the shared service",
    )
    parser.add_argument(
        "--home", type=Path, help="data directory of the embedded services (QTASKDIST_HOME)"
    )
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for key, (add_arguments, run) in COMMANDS.items():
        words = key.split()
        if len(words) == 1:
            sub = top.add_parser(words[0], help=_first_line(run.__doc__))
        else:
            group, action = words
            if group not in groups:
                groups[group] = top.add_parser(group).add_subparsers(
                    dest="action", required=True, metavar="ACTION"
                )
            sub = groups[group].add_parser(action, help=_first_line(run.__doc__))
        add_arguments(sub)
        sub.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.home is not None:
            settings = dataclasses.replace(settings, home=args.home.expanduser())
        return int(args._run(args, settings))
    except QtaskdistError as exc:
        # One clean line (the first: multi-line messages carry a log tail after it).
        lines = str(exc).splitlines() or [type(exc).__name__]
        print(f"qtaskdist: error: {lines[0]}", file=sys.stderr)
        if len(lines) > 1:
            print("\n".join(lines[1:]), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
