"""Static tokens, for a shared service without JupyterHub.

The file holds one ``<sha256 hex of the token> <user name> [admin]`` per line (``#``
starts a comment), never a token itself: ``qtaskdist hash-token --user NAME`` prints a
line for a new token. It is read again when its modification time changes, so adding or
revoking a token needs no restart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from qtaskdist_jupyter.core.errors import ConfigError

_HEX64 = re.compile(r"[0-9a-f]{64}")
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_TOKEN_HEADER = re.compile(r"(?:token|bearer)\s+(\S+)\s*", re.IGNORECASE)


class HostSettings(TypedDict, total=False):
    """What an authenticator adds to the service's tornado application settings."""

    cookie_secret: bytes  # signs the hub's OAuth cookies


@dataclass(frozen=True)
class Identity:
    """Who asks: the owner of their tasks, and whether they see fleet internals."""

    name: str
    admin: bool = False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_from_header(value: str) -> str | None:
    """The token of ``Authorization: token …`` / ``Bearer …``, else None."""
    m = _TOKEN_HEADER.fullmatch(value)
    return m.group(1) if m else None


def parse_tokens(text: str, source: str) -> dict[str, Identity]:
    """hash → identity; a ConfigError names the line of anything else."""
    out: dict[str, Identity] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}, line {n}"
        if len(words) not in (2, 3) or (len(words) == 3 and words[2] != "admin"):
            raise ConfigError(f"{where}: expected '<sha256 hex> <user name> [admin]'")
        digest, name = words[0].lower(), words[1]
        if not _HEX64.fullmatch(digest):
            raise ConfigError(f"{where}: not a sha256 hex digest (64 hex digits)")
        if not USER_NAME.fullmatch(name):
            raise ConfigError(f"{where}: user name {name[:40]!r} is not [A-Za-z0-9._@+-]")
        if digest in out:
            raise ConfigError(f"{where}: the same token hash appears twice")
        out[digest] = Identity(name, admin=len(words) == 3)
    return out


class StaticTokens:
    """``QTASKDIST_SERVICE_AUTH=tokens``: the bearer token's hash looked up in the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime_ns = -1
        self._by_hash: dict[str, Identity] = {}
        self._load()  # a missing or bad file stops the start-up, naming it

    def _load(self) -> None:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                self._by_hash = parse_tokens(self.path.read_text(), str(self.path))
                self._mtime_ns = mtime_ns
        except OSError as exc:
            raise ConfigError(f"tokens file {self.path}: {exc.strerror}") from exc

    async def identify(self, handler: Any) -> Identity | None:
        token = token_from_header(handler.request.headers.get("Authorization", ""))
        if token is None:
            return None
        try:
            self._load()
        except ConfigError as exc:  # keep the last good table; say why in the log
            handler.log.error("qtaskdist service: %s; using the tokens read before", exc)
        return self._by_hash.get(hash_token(token))

    def extra_handlers(self, prefix: str) -> list[tuple[str, Any]]:
        return []

    def app_settings(self) -> HostSettings:
        return {}
