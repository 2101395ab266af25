"""The events cursor (qtaskdist_server/api/cursors.py): opaque, bound to its owner,
tamper-evident, the same size whatever it holds, and stateless (a second sealer with the
same key opens it)."""

from __future__ import annotations

import base64

import pytest
from qtaskdist_server.api.cursors import CURSOR_TOKEN, CursorSealer, cursor_key

from qtaskdist_jupyter.core.errors import InvalidInput


def test_a_cursor_opens_for_its_owner_under_the_same_secret_only() -> None:
    token = CursorSealer(cursor_key("s3cret")).seal("alice", "1712345678901-7")
    assert CURSOR_TOKEN.fullmatch(token) and "1712345678901" not in token
    # Another process with the same secret: the same position, no shared memory.
    assert CursorSealer(cursor_key("s3cret")).open("alice", token) == "1712345678901-7"
    for sealer, owner in (
        (CursorSealer(cursor_key("s3cret")), "bob"),  # another user's cursor
        (CursorSealer(cursor_key("other")), "alice"),  # another secret
        (CursorSealer(cursor_key(None)), "alice"),  # a random key (a restarted process)
    ):
        with pytest.raises(InvalidInput) as info:
            sealer.open(owner, token)
        assert info.value.field == "after"


def test_a_changed_cursor_is_refused() -> None:
    sealer = CursorSealer(cursor_key("k"))
    token = sealer.seal("alice", "5-0")
    raw = bytearray(base64.urlsafe_b64decode(token[1:]))
    for i in (0, 20, len(raw) - 1):  # nonce, ciphertext, tag
        changed = bytearray(raw)
        changed[i] ^= 1
        with pytest.raises(InvalidInput):
            sealer.open("alice", "c" + base64.urlsafe_b64encode(bytes(changed)).decode())
    with pytest.raises(InvalidInput):
        sealer.open("alice", token[:-4])


def test_cursors_look_alike_whatever_they_hold() -> None:
    sealer = CursorSealer(cursor_key(None))
    a, b = sealer.seal("alice", "0-1"), sealer.seal("alice", "18446744073709551615-0")
    c = sealer.seal("alice", "0-1")
    assert len(a) == len(b) == len(c) == 97 and a != c  # a fresh nonce each time
    assert sealer.open("alice", b) == "18446744073709551615-0"
