"""Strict JSON for what users send: the one parser of request bodies, and the checks
every value bound for PostgreSQL passes before the first write.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e999`` (read as ``inf``), which
PostgreSQL's ``jsonb`` then refuses mid-write; a NUL in any string is refused by
PostgreSQL ``text`` and ``jsonb`` alike; deep nesting makes the parser or a later
serializer raise RecursionError. All of that is a 4xx here, before anything is written.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from qtaskdist_jupyter.core.errors import BadJson, InvalidInput, LimitExceeded

# Deepest request body: a payload's parameter_bindings are 5 levels down; labels have
# their own, lower limit (Limits.label_max_depth).
MAX_BODY_DEPTH = 32
# JSON may spell lone UTF-16 surrogates ("\\ud800"); they have no UTF-8 form.
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads(raw: bytes | str, *, max_depth: int = MAX_BODY_DEPTH) -> Any:
    """Parse ``raw`` strictly and check it (see :func:`check`); BadJson (400) or
    InvalidInput (422) on what it refuses."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        msg = f"request body nests deeper than {max_depth} levels"
        raise BadJson(msg, field="body", limit="depth", maximum=max_depth) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(f"request body is not JSON: {str(exc)[:200]}", field="body") from None
    check(data, max_depth=max_depth)
    return data


def check(value: Any, *, max_depth: int = MAX_BODY_DEPTH, where: str = "") -> int:
    """Walk ``value`` without recursion: no NUL in a string or key, no non-finite float,
    no nesting deeper than ``max_depth``. Returns the number of dict keys seen."""
    keys = 0
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, str):
            if _UNENCODABLE.search(v):
                raise InvalidInput(
                    f"{path or 'body'}: NUL characters and lone surrogates are not allowed",
                    field=path,
                )
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise InvalidInput(f"{path or 'body'}: {v} is not a finite number", field=path)
        elif isinstance(v, dict | list):
            if depth >= max_depth:
                raise LimitExceeded(
                    f"{path or 'body'}: nested deeper than {max_depth} levels",
                    field=path or "body",
                    limit="depth",
                    maximum=max_depth,
                )
            if isinstance(v, dict):
                keys += len(v)
                for k, item in v.items():
                    sub = f"{path}.{k}" if path else str(k)
                    if _UNENCODABLE.search(k):
                        raise InvalidInput(
                            f"{path or 'body'}: NUL characters and lone surrogates are not "
                            "allowed in keys",
                            field=path or None,
                        )
                    stack.append((item, sub, depth + 1))
            else:
                stack.extend((item, f"{path}.{i}", depth + 1) for i, item in enumerate(v))
        elif not (v is None or isinstance(v, bool | int)):
            raise InvalidInput(f"{path or 'body'}: {type(v).__name__} is not JSON", field=path)
    return keys


def dumps(value: Any) -> str:
    """What the API answers with: strict (a non-finite float raises here, not later)."""
    return json.dumps(value, allow_nan=False)
