"""Parameter bindings checked against the circuit's parameters at submit time."""

from __future__ import annotations

from collections.abc import Iterable

from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.core.jsontypes import JsonMap

_FIELD = "payload.parameter_bindings"
_SHOWN = 10  # names quoted in a message


def _names(names: Iterable[str]) -> str:
    listed = sorted(names)
    more = f" and {len(listed) - _SHOWN} more" if len(listed) > _SHOWN else ""
    return f"{listed[:_SHOWN]}{more}"


def check_bindings(payload: JsonMap, parameters: Iterable[str]) -> None:
    """Every binding names exactly the circuit's parameters; InvalidInput (422) naming the
    unknown or missing names and the first binding that has them. ``payload``: validated
    (its bindings are an object, or a list of objects)."""
    bindings = payload.get("parameter_bindings")
    if bindings is None:
        return
    known = frozenset(parameters)
    listed = [bindings] if isinstance(bindings, dict) else bindings
    for i, binding in enumerate(listed if isinstance(listed, list) else []):
        names = binding.keys() if isinstance(binding, dict) else frozenset[str]()
        unknown, missing = names - known, known - names
        if not unknown and not missing:
            continue
        where = _FIELD if isinstance(bindings, dict) else f"{_FIELD}.{i}"
        what = [f"unknown {_names(unknown)}"] if unknown else []
        what += [f"missing {_names(missing)}"] if missing else []
        msg = f"{where}: {', '.join(what)}; the circuit's parameters are {_names(known)}"
        raise InvalidInput(msg, field=where)
