"""A task's result on the notebook side: stored arrays come back as numpy arrays, fetched
on first access and streamed (``GET tasks/{id}/result/{name}?encoding=zstd``), with a
progress bar when there are more than a few MB to move."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from qtaskdist_jupyter.core import arrays, counts
from qtaskdist_jupyter.core.errors import ArrayNotFound, ServiceUnavailable
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonValue
from qtaskdist_jupyter.kernel.display import array_summary_html, array_summary_text

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from qtaskdist_jupyter.kernel.client import Client

# A download larger than this (compressed bytes) shows a progress bar.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024


def fetch_array(
    client: Client, task_id: str, ref: JsonMap, *, progress: bool | None = None
) -> np.ndarray:
    """Stream one stored array into memory: the array is the only full-size buffer, and
    its sha256 is checked against the reference."""
    name = str(ref["$array"])
    path = f"tasks/{task_id}/result/{name}"
    stored = ref.get("stored_bytes", 0)
    stored = stored if isinstance(stored, int) else 0
    show = stored > PROGRESS_MIN_BYTES if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm  # tqdm.auto probes for ipywidgets: only when a bar shows

        bar = tqdm(total=stored, unit="B", unit_scale=True, desc=name)
    try:
        with client._http.stream("GET", path, params={"encoding": "zstd"}) as r:
            if r.status_code >= 400:
                r.read()
                raise client._error(r, "GET", path)
            return arrays.decode(
                r.iter_bytes(arrays.CHUNK_BYTES),
                dict(ref),
                bar.update if bar is not None else None,
            )
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"fetching {name} of task {task_id} failed: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()


class ArraySummary(dict[str, "JsonValue"]):
    """A stored array's reference: a dict for code (``["shape"]``, ``["top"]``), shown as
    one readable line (dtype, shape, sizes, top states) in a notebook and in ``repr``."""

    def __init__(self, key: str, ref: JsonMap) -> None:
        super().__init__(ref)
        self.key = key

    def __repr__(self) -> str:
        return f"<{array_summary_text(self.key, self)}>"

    def _repr_html_(self) -> str:
        return array_summary_html(self.key, self)


class LazyResult(dict[str, Any]):
    """The result dict; a stored array is fetched the first time it is read (``[]``,
    ``get``, ``items``, ``values``) and kept (stored counts as their dict).
    ``summary(key)`` describes it without fetching (shape, dtype, bytes, top states).

    Its values are the result's JSON, or the numpy arrays and counts fetched in their
    place: ``Any``, so that notebook code indexes them as it reads them."""

    def __init__(self, data: Mapping[str, object], fetch: Callable[[JsonMap], Any]) -> None:
        super().__init__(data)
        self._fetch = fetch
        for k, v in data.items():
            if k == "results" and isinstance(v, list):
                parts = [LazyResult(p, fetch) if isinstance(p, dict) else p for p in v]
                super().__setitem__(k, parts)

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if arrays.is_ref(value):
            value = self._fetch(value)
            if counts.is_counts_array(value):  # stored counts come back as the dict
                value = counts.from_array(value)
            super().__setitem__(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def items(self) -> Any:
        return [(k, self[k]) for k in self]

    def values(self) -> Any:
        return [self[k] for k in self]

    def summary(self, key: str) -> ArraySummary | None:
        """A stored array's reference (None for inline values and fetched arrays)."""
        value = super().get(key)
        return ArraySummary(key, value) if arrays.is_ref(value) else None


def lazy_result(client: Client, task_id: str, result: JsonMap | None) -> LazyResult:
    return LazyResult(
        dict(result or {}), lambda ref: fetch_array(client, task_id, ref, progress=None)
    )


__all__ = [
    "ArrayNotFound",
    "ArraySummary",
    "LazyResult",
    "PROGRESS_MIN_BYTES",
    "fetch_array",
    "lazy_result",
]
