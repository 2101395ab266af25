"""Redis ACL users for a team deployment: ``qtaskdist-service`` and ``qtaskdist-worker``.

Each may run only the commands :class:`~.broker.Broker` sends for its side and touch only
its keys (:mod:`.keys`), so a stolen worker or service credential cannot FLUSHALL, CONFIG,
read or write other keys, or run arbitrary Lua (EVAL is not allowed; EVALSHA runs a
loaded script, and every command a script sends is checked against the same ACL).
``qtaskdist redis-acl`` prints these as ACL file lines or ``ACL SETUSER`` commands, with
the passwords as SHA-256 hashes (``#…``): the password files stay where they are.

Needs Redis ≥ 7.0 or Valkey (read-only key patterns ``%R~``, ``+cmd|subcmd`` rules).
redis-py's ``CLIENT SETINFO`` at connect is refused and ignored by the client.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from qtaskdist_jupyter.core.broker.keys import (
    CANCELS_STREAM,
    DEAD_STREAM,
    DELAYED_KEY,
    EVENTS_STREAM,
    PRIORITY_STREAMS,
    RECONCILE_LOCK_KEY,
    STREAMS,
    WORKERS_KEY,
)
from qtaskdist_jupyter.core.errors import InvalidInput

SERVICE_USER = "qtaskdist-service"
WORKER_USER = "qtaskdist-worker"
TASK_STREAMS = (*STREAMS.values(), *PRIORITY_STREAMS.values())
# Every user: a connection check, the database number of its URL, and the scripts.
_COMMON = ("ping", "select", "evalsha", "script|load")


@dataclass(frozen=True)
class AclUser:
    name: str
    commands: tuple[str, ...]
    keys: tuple[str, ...]  # read and write
    read_keys: tuple[str, ...] = ()  # read only


USERS: dict[str, AclUser] = {
    SERVICE_USER: AclUser(
        SERVICE_USER,
        # submit/enqueue (publish.lua: XADD), cancel (XADD), events (XREAD, XINFO STREAM,
        # EXISTS), health and metrics (XLEN, XINFO GROUPS, HGETALL).
        commands=(
            *_COMMON,
            "xadd",
            "xread",
            "xinfo|stream",
            "xinfo|groups",
            "xlen",
            "exists",
            "hgetall",
        ),
        keys=(*TASK_STREAMS, EVENTS_STREAM, CANCELS_STREAM),
        read_keys=(DEAD_STREAM, WORKERS_KEY),
    ),
    WORKER_USER: AclUser(
        WORKER_USER,
        # claim (XREADGROUP, XGROUP CREATE, XAUTOCLAIM, XCLAIM), settle (publish.lua: XADD,
        # XACK, XDEL), retry later (ZADD; promote.lua: ZRANGEBYSCORE, XADD, ZREM), dead
        # letters (XADD), cancels (XREAD), heartbeats (HSET, HDEL, HGETALL), reconcile
        # (SET NX PX, XRANGE, ZRANGE).
        commands=(
            *_COMMON,
            "xreadgroup",
            "xgroup|create",
            "xautoclaim",
            "xclaim",
            "xack",
            "xdel",
            "xadd",
            "xread",
            "xrange",
            "zadd",
            "zrange",
            "zrangebyscore",
            "zrem",
            "set",
            "hset",
            "hdel",
            "hgetall",
        ),
        keys=(
            *TASK_STREAMS,
            EVENTS_STREAM,
            DEAD_STREAM,
            DELAYED_KEY,
            WORKERS_KEY,
            RECONCILE_LOCK_KEY,
        ),
        read_keys=(CANCELS_STREAM,),
    ),
}


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis ACL rules take as ``#<hash>``."""
    if len(password) < 16 or any(c.isspace() for c in password):
        raise InvalidInput(
            "a Redis ACL password needs at least 16 characters and no whitespace",
            field="password",
        )
    return hashlib.sha256(password.encode()).hexdigest()


def rules(user: AclUser, password: str) -> list[str]:
    """The ACL rules of ``user``: everything reset first, then its password, keys, commands."""
    out = ["reset", "on", f"#{password_hash(password)}", "resetchannels"]
    out += [f"~{k}" for k in user.keys] + [f"%R~{k}" for k in user.read_keys]
    out += ["-@all"] + [f"+{c}" for c in user.commands]
    return out


def acl_file_line(user: AclUser, password: str) -> str:
    return " ".join(["user", user.name, *rules(user, password)])


def setuser_command(user: AclUser, password: str) -> str:
    return " ".join(["ACL", "SETUSER", user.name, *rules(user, password)])
