"""JSON on the worker's hot paths, with orjson: the job-process pipe, the completion
statement and the rows PostgreSQL returns.

A settled batch is encoded and decoded several times on its way from Aer to its row (the
job process's reply, the worker's statement, PostgreSQL's rows), on the worker's one event
loop; orjson does each several times faster than the standard library. Its output is
compact JSON that ``json.loads`` reads back equal, with two differences from
``json.dumps``, handled here:

* keys that are not strings, and integers beyond 64 bits, which orjson refuses: such a
  value is encoded by ``json.dumps`` instead, as before;
* NaN and ±Infinity, which ``json.dumps`` writes as bare ``NaN`` / ``Infinity`` tokens that
  no JSON parser accepts (PostgreSQL refused the whole statement): orjson writes ``null``,
  as JavaScript's ``JSON.stringify`` does.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

loads = orjson.loads


def dumps_bytes(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON; anything else JSON can't hold goes through ``str()``."""
    try:
        return orjson.dumps(obj, default=str)
    except orjson.JSONEncodeError:
        return json.dumps(obj, default=str).encode()


def dumps(obj: Any) -> str:
    return dumps_bytes(obj).decode()
