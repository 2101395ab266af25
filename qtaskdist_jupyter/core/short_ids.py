"""Short ids: a task's or a batch's id given by its start, as the tables show it.

The table, the panel and ``%qtask list`` show the first 8 characters of an id. A user may
type those back (``%qtask cancel 1f0c2a9e``): the server resolves such a start among the
ids of the user who asks (``GET tasks/resolve``, docs/rest-api.md). A start is at least
:data:`MIN_HEX` hex digits, in any case, with hyphens only where a UUID has them
(``1f0c2a9e``, ``1f0c2a9e-77``, ``1F0C2A9E77``); anything else is refused before any
query. Pure functions, shared by the notebook's client and the server.
"""

from __future__ import annotations

import re
import uuid

from qtaskdist_jupyter.core.errors import InvalidInput

MIN_HEX = 8
_HEX = re.compile(r"[0-9a-f]{8,32}", re.ASCII)


def id_start(text: str) -> str | None:
    """The hex digits of ``text`` (lower case) when it is the start of a UUID, at least
    :data:`MIN_HEX` of them; else None. A whole UUID is a start too (32 digits)."""
    low = text.lower()
    digits = low.replace("-", "")
    if not _HEX.fullmatch(digits):
        return None
    # Hyphens only where the UUID's text has them: 8-4-4-4-12.
    if "-" in low and low != str(uuid.UUID(digits.ljust(32, "0")))[: len(low)]:
        return None
    return digits


def parse_id_start(text: str, field: str = "prefix") -> str:
    """:func:`id_start`, or InvalidInput (422) naming ``field``."""
    digits = id_start(text)
    if digits is None:
        raise InvalidInput(
            f"{field}={text[:40]!r} is not the start of a task or batch id: give at least "
            f"{MIN_HEX} of its hex digits, such as the {MIN_HEX} characters the table shows",
            field=field,
        )
    return digits


def id_range(digits: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The smallest and the largest UUID that start with ``digits`` (from
    :func:`id_start`): a range an index on the id column answers."""
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
