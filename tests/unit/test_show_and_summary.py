"""Issue 26 point 12: ``%qtask show`` shows a task once, ``res.summary(key)`` reads as one
line while staying a dict, and a batch's tasks come back in binding order."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from qtaskdist_jupyter.kernel.handles import TaskHandle
from qtaskdist_jupyter.kernel.lazy_result import ArraySummary, LazyResult
from qtaskdist_jupyter.kernel.magic_helpers import binding_order
from qtaskdist_jupyter.kernel.magics import QtaskMagics

TID = "3f2b1c6e-0000-4000-8000-000000000001"
REF = {
    "$array": "statevector",
    "dtype": "complex128",
    "shape": [1 << 20],
    "nbytes": 16 << 20,
    "stored_bytes": 1 << 20,
    "top": [{"bitstring": b * 20, "probability": 0.5} for b in "01"],
}
ROW: dict[str, Any] = {
    "task_id": TID,
    "name": "ghz20",
    "task_type": "simulate",
    "status": "completed",
    "attempt": 1,
    "result": {"statevector": REF, "counts": {}},
}


class OneTask:
    """Just what ``%qtask show <id>`` asks of a Client."""

    def get(self, task_id: str) -> dict[str, Any]:
        assert task_id == TID
        return dict(ROW)


def test_show_prints_the_summary_once_and_no_empty_counts() -> None:
    ip = InteractiveShell.instance()
    magics = QtaskMagics(ip)
    magics._client = OneTask()
    ip.register_magics(magics)
    with capture_output() as cap:
        ip.run_line_magic("qtask", f"show {TID}")
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert html.count("qtd-array-summary") == 1, html
    assert "counts:" not in html and "counts: {}" not in cap.stdout


def test_a_handle_with_empty_counts_shows_none() -> None:
    html = TaskHandle(None, TID, ROW)._repr_html_()  # type: ignore[arg-type]
    assert "counts:" not in html
    assert html.count("qtd-array-summary") == 1


def test_summary_reads_as_a_line_and_stays_a_dict() -> None:
    res = LazyResult({"statevector": REF}, fetch=lambda ref: pytest.fail("no download"))
    s = res.summary("statevector")
    assert isinstance(s, ArraySummary) and isinstance(s, dict)
    assert s["shape"] == [1 << 20] and s["top"][0]["probability"] == 0.5
    text = repr(s)
    assert text.startswith("<statevector complex128 [1048576] · 16.0 MiB"), text
    assert "top: |" + "0" * 20 + "⟩ 0.5" in text
    assert "<b>statevector</b> complex128 [1048576]" in s._repr_html_()


def test_a_batch_comes_back_in_binding_order() -> None:
    names = [f"sweep[{i}]" for i in range(12)]
    rows = [{"task_id": str(uuid.uuid4()), "name": n} for n in names]
    listed = sorted(rows, key=lambda r: r["task_id"], reverse=True)  # as the API lists them
    by_id = {r["task_id"]: r["name"] for r in rows}
    assert [by_id[t] for t in binding_order(listed)] == names
