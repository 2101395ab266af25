"""Who is an operator, and what a user who is not sees of the fleet.

An operator (``admin`` on ``qtaskdist``) sees the fleet's internals: workers' hosts and
pids (GET health), fleet-wide counts (GET metrics) and, in task rows, the worker that ran
a task. Everyone else sees their own tasks with the worker named by a pseudonym (stable
within one server process) and no host or pid, also not inside error texts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Mapping
from typing import Any

from qtaskdist_jupyter.core.errors import OwnerNamed

REDACTED = "[redacted]"
OWNER_FIELD = "owner"
# "pid 4242", "pid=4242", "PID: 4242", "process 4242", "(4242)" after "process".
_PID = re.compile(r"\b(pids?|process(?:es)?)(\s*[:=#]?\s*\(?)(\d+)", re.IGNORECASE)


def is_operator(
    *,
    username: str,
    admin_users: Collection[str],
    granted: bool,
    single_user: bool,
    default_authorizer: bool,
) -> bool:
    """Whether a user is an operator.

    ``admin_users`` always are. Otherwise the authorizer must grant ``admin`` on
    ``qtaskdist`` (``granted``); jupyter_server's default authorizer grants everything to
    everyone, which decides something only on a single-user server (its one user). With a
    multi-user identity provider and that authorizer, nobody else is an operator."""
    if username in admin_users:
        return True
    return granted and (single_user or not default_authorizer)


class Redactor:
    """A user's view of a task row: worker names become pseudonyms; hosts and pids go."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def pseudonym(self, worker: str | None) -> str | None:
        if not worker:
            return worker
        digest = hmac.new(self._key, worker.encode(), hashlib.sha256).hexdigest()
        return f"worker-{digest[:10]}"

    def text(self, message: str | None, secrets_: Collection[str]) -> str | None:
        """``message`` without the worker names and hosts in ``secrets_`` or any pid."""
        if not message:
            return message
        for s in sorted((s for s in secrets_ if s), key=len, reverse=True):
            message = message.replace(s, REDACTED)
        return _PID.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", message)

    def row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A task row (as answered: JSON fields) for a user who is not an operator."""
        meta = row.get("meta_data")
        meta = dict(meta) if isinstance(meta, dict) else None
        attempts = [dict(a) for a in (meta or {}).get("attempts") or [] if isinstance(a, dict)]
        hidden = {str(v) for v in (row.get("worker"), *(a.get("worker") for a in attempts)) if v}
        if meta is not None:
            hidden |= {str(meta[k]) for k in ("worker", "host") if meta.get(k)}
            meta.pop("host", None)
            if "worker" in meta:
                meta["worker"] = self.pseudonym(meta["worker"])
            for a in attempts:
                a["worker"] = self.pseudonym(a.get("worker"))
                a["error"] = self.text(a.get("error"), hidden)
            if attempts:
                meta["attempts"] = attempts
        out = dict(row)
        if meta is not None:
            out["meta_data"] = meta
        if "worker" in out:
            out["worker"] = self.pseudonym(out["worker"])
        if "error" in out:
            out["error"] = self.text(out["error"], hidden)
        return out


def refuse_owner_fields(data: dict[str, Any], *, where: str = "") -> None:
    """OwnerNamed (403) when a request body or its query names an owner: at the top, or
    in any task of a batch. The owner is who the host says asks, so naming one (anyone,
    oneself included) is refused before anything is parsed further or written."""
    if OWNER_FIELD in data:
        raise _owner_named(f"{where}{OWNER_FIELD}")
    tasks = data.get("tasks")
    if isinstance(tasks, list):
        for i, task in enumerate(tasks):
            if isinstance(task, dict) and OWNER_FIELD in task:
                raise _owner_named(f"{where}tasks.{i}.{OWNER_FIELD}")


def _owner_named(field: str) -> OwnerNamed:
    return OwnerNamed(
        f"{field}: a task's owner is who sends the request; it can't be named",
        field=field,
    )
