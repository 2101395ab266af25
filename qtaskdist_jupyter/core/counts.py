"""A simulate task's counts: their size against ``QTASKDIST_MAX_RESULT_BYTES`` once Aer
has returned them, and how a large counts map leaves the row like an array.

A counts map whose JSON would pass :data:`~.arrays.INLINE_JSON_MAX_BYTES` is stored as a
structured ``.npy`` array (``key``: the bitstrings as ASCII bytes, ``count``: int64), and
the row keeps its reference with a summary: ``distinct`` keys, ``shots`` and the ``top``
outcomes. The notebook client turns the array back into the dict (:func:`from_array`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from qtaskdist_jupyter.core.arrays import INLINE_JSON_MAX_BYTES, TOP_K, human_bytes, spill
from qtaskdist_jupyter.core.errors import ResultTooLarge

FIELDS = ("key", "count")


def counts_bytes(counts: dict[str, int]) -> int:
    """JSON bytes of a counts map as it is stored (``{"k": v, …}``; an empty one: 0)."""
    return sum(len(k) + len(str(v)) + 6 for k, v in counts.items())


def check_counts_size(
    counts_maps: Iterable[dict[str, int]], other_bytes: int, max_bytes: int
) -> None:
    """ResultTooLarge when the counts a run produced, with its arrays (``other_bytes``),
    exceed the limit: the completion-time side of :func:`.arrays.check_result_size`."""
    total = other_bytes + sum(counts_bytes(c) for c in counts_maps)
    if total > max_bytes:
        raise ResultTooLarge(
            f"the result is {human_bytes(total)} (counts and arrays); "
            f"QTASKDIST_MAX_RESULT_BYTES is {human_bytes(max_bytes)}",
            limit="max_result_bytes",
            value=total,
            maximum=max_bytes,
            field="payload.shots",
        )


def counts_part(counts: dict[str, int], spool_dir: str | None) -> Any:
    """The counts as they go into the result: inline, or spilled with a summary."""
    if counts_bytes(counts) <= INLINE_JSON_MAX_BYTES:
        return counts
    width = max(len(k) for k in counts)
    arr = np.empty(len(counts), dtype=[(FIELDS[0], f"S{width}"), (FIELDS[1], "<i8")])
    arr[FIELDS[0]] = [k.encode("ascii") for k in counts]
    arr[FIELDS[1]] = list(counts.values())
    shots = int(arr[FIELDS[1]].sum())
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_K]
    top = [{"bitstring": k, "count": v, "probability": v / shots} for k, v in best]
    return spill(arr, spool_dir, top=top, distinct=len(counts), shots=shots)


def is_counts_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.names == FIELDS


def from_array(arr: np.ndarray) -> dict[str, int]:
    """A stored counts array back into the counts dict."""
    return {k.decode("ascii"): int(c) for k, c in zip(arr[FIELDS[0]], arr[FIELDS[1]], strict=True)}
