"""Parameter bindings checked against the circuit's parameters at submit time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qtaskdist_jupyter.core.errors import InvalidInput

_FIELD = "payload.parameter_bindings"
_SHOWN = 10  # names quoted in a message


def _names(names: Iterable[str]) -> str:
    listed = sorted(names)
    more = f" and {len(listed) - _SHOWN} more" if len(listed) > _SHOWN else ""
    return f"{listed[:_SHOWN]}{more}"


def check_bindings(payload: dict[str, Any], parameters: Iterable[str]) -> None:
    """Every binding names exactly the circuit's parameters; InvalidInput (422) naming the
    unknown or missing names and the first binding that has them."""
    bindings = payload.get("parameter_bindings")
    if bindings is None:
        return
    known = frozenset(parameters)
    for i, binding in enumerate([bindings] if isinstance(bindings, dict) else bindings):
        unknown, missing = binding.keys() - known, known - binding.keys()
        if not unknown and not missing:
            continue
        where = _FIELD if isinstance(bindings, dict) else f"{_FIELD}.{i}"
        what = [f"unknown {_names(unknown)}"] if unknown else []
        what += [f"missing {_names(missing)}"] if missing else []
        msg = f"{where}: {', '.join(what)}; the circuit's parameters are {_names(known)}"
        raise InvalidInput(msg, field=where)
