"""Opaque events cursors that need no server state: the stream position, sealed.

A cursor is ``c`` + base64url(nonce ‖ ciphertext ‖ tag): the position read up to (a Redis
stream id, padded to a fixed length, so a cursor's size says nothing either) encrypted and
authenticated with AES-GCM under the service's cursor key, with the owner as associated
data. A cursor therefore reveals nothing (not whether anyone's events followed ``after``,
nor when), can't be forged or altered, is refused for any other owner, and costs the
server no memory per request: every process with the same key accepts the others'
cursors (two service processes behind one proxy).

The key comes from ``QTASKDIST_EVENTS_CURSOR_SECRET``; without it each server process
draws a random one at start, and a cursor from before a restart (or from another process)
is refused with 422 naming ``after``: the client starts again from now (the notebook
client does so by itself). docs/rest-api.md "Events".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qtaskdist_jupyter.core.errors import InvalidInput

_NONCE_BYTES = 12
_TAG_BYTES = 16
# The longest stream id the API accepts ("<20 digits>-<20 digits>") is 41 characters.
_POSITION_BYTES = 44
_TOKEN_BYTES = _NONCE_BYTES + _POSITION_BYTES + _TAG_BYTES  # 72: 96 base64 characters
CURSOR_TOKEN = re.compile(r"c[A-Za-z0-9_-]{96}", re.ASCII)
_KEY_CONTEXT = b"qtaskdist events cursor\0"


def cursor_key(secret: str | None) -> bytes:
    """The 32-byte AES key: derived from ``secret``, else random (this process only)."""
    if not secret:
        return os.urandom(32)
    return hashlib.sha256(_KEY_CONTEXT + secret.encode()).digest()


class CursorSealer:
    """Seals a stream position into a cursor for one owner, and opens it again."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, owner: str, position: str) -> str:
        plain = position.encode("ascii")
        if len(plain) > _POSITION_BYTES:
            raise ValueError(f"stream position {position[:50]!r} is too long to seal")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plain.ljust(_POSITION_BYTES), owner.encode())
        return "c" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, owner: str, token: str) -> str:
        """The position in ``token``; InvalidInput (422, field ``after``) when it is not a
        cursor this key sealed for ``owner``."""
        try:
            raw = base64.urlsafe_b64decode(token[1:])
            if len(raw) != _TOKEN_BYTES:
                raise ValueError("wrong length")
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], owner.encode())
        except (ValueError, binascii.Error, InvalidTag):
            raise InvalidInput(
                "after: not an events cursor this service issued to you (changed, another "
                "user's, or from before a restart); ask again without after to start from now",
                field="after",
            ) from None
        return plain.decode("ascii").rstrip()
