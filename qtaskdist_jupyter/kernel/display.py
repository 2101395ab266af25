"""Result display: histograms, probabilities / statevector, sweep curves, QIR text, errors.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, so no global state and no
GUI backend: works under Agg, headless CI and any kernel) and shown as PNG images.

matplotlib and ``IPython.display`` are imported where a result is shown: the handles import
this module, and a Client in plain Python (a script, the worker tests) needs neither. So is
numpy (``core.arrays``): the lab extension's build runs ``live_view`` for the status colours
in an environment that holds only the build tools.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject, JsonValue
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.kernel.answers import TaskJson
from qtaskdist_jupyter.kernel.colors import STATUS_COLORS

MAX_BARS = 64


def status_badge(status: str) -> str:
    color = STATUS_COLORS.get(status, "#9e9e9e")
    return (
        f'<span class="qtd-status qtd-status-{html.escape(status)}" style="background:{color};'
        f'color:white;padding:1px 6px;border-radius:8px">{html.escape(status)}</span>'
    )


def _figure(width: float = 6.0, height: float = 3.0) -> Any:
    from matplotlib.figure import Figure  # lazy: see the docstring

    return Figure(figsize=(width, height), layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _show(fig: Any) -> None:
    from IPython.display import Image, display  # lazy: see the docstring

    display(Image(data=_png(fig), format="png"))


def top_items(values: Mapping[str, float], n: int = MAX_BARS) -> list[tuple[str, float]]:
    """The ``n`` largest entries, then sorted by key (bitstrings read left to right)."""
    top = sorted(values.items(), key=lambda kv: -kv[1])[:n]
    return sorted(top)


def value_axis_top(values: Sequence[float]) -> float:
    """The value axis' top: a tenth above the largest bar, so the bars of a many-qubit
    state (each probability far below 1) fill the chart instead of vanishing on 0-1."""
    top = max(values, default=0.0)
    return top * 1.1 if top > 0 else 1.0


def label_rotation(labels: Sequence[str]) -> int:
    """Degrees to turn bar labels: upright only when few and short (20-bit labels side by
    side overlap)."""
    return 90 if len(labels) > 8 or max(map(len, labels), default=0) > 4 else 0


def shown_of(shown: int, total: int) -> str:
    """ " (top 8 of 1048576)" when a chart shows only the largest entries, else ""."""
    return "" if shown == total else f" (top {shown} of {total})"


def _bars(items: list[tuple[str, float]], color: str, ylabel: str) -> tuple[Any, Any]:
    labels = [k for k, _ in items]
    turned = label_rotation(labels) == 90
    tall = 3.0 + (0.08 * max(map(len, labels), default=0) if turned else 0.0)
    fig = _figure(max(4.0, min(12.0, 0.45 * len(items) + 2)), tall)
    ax = fig.add_subplot()
    ax.bar(labels, [v for _, v in items], color=color)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, value_axis_top([v for _, v in items]))
    ax.tick_params(axis="x", labelrotation=label_rotation(labels))
    return fig, ax


def counts_figure(counts: Mapping[str, float], title: str | None = None) -> Any:
    items = top_items(counts)
    fig, ax = _bars(items, "#1e88e5", "counts")
    # Names are user text: "$" must not start mathtext (a bad formula raises).
    ax.set_title((title or "counts") + shown_of(len(items), len(counts)), parse_math=False)
    return fig


def probabilities_figure(probs: Mapping[str, float] | Sequence[float], title: str = "") -> Any:
    if not isinstance(probs, Mapping):
        n = max(1, (len(probs) - 1).bit_length())
        probs = {format(i, f"0{n}b"): p for i, p in enumerate(probs)}
    items = top_items(probs)
    fig, ax = _bars(items, "#8e24aa", "probability")
    shown = shown_of(len(items), len(probs))
    ax.set_title((title or "probabilities") + shown, parse_math=False)
    return fig


def statevector_probabilities(sv: Sequence[Any]) -> list[float]:
    """Aer's statevector as JSON: [re, im] pairs or complex-like numbers."""
    out = []
    for a in sv:
        if isinstance(a, (list, tuple)):
            out.append(float(a[0]) ** 2 + float(a[1]) ** 2)
        elif isinstance(a, dict):
            out.append(float(a.get("real", 0)) ** 2 + float(a.get("imag", 0)) ** 2)
        else:
            out.append(abs(complex(a)) ** 2)
    return out


def expectation_figure(
    results: Sequence[JsonMap], parameter: str | None = None, labels: Sequence[str] = ()
) -> Any:
    """Expectation values against one swept parameter (the first, unless named)."""
    rows = [r for r in results if r.get("expectation_values") is not None]
    if not rows:
        raise ValueError("no expectation values in these results")
    parameter = parameter or next(iter(_object(rows[0].get("parameters")) or {"index": 0}))
    xs = [_float(_object(r.get("parameters")).get(parameter, i)) for i, r in enumerate(rows)]
    values = [_floats(r.get("expectation_values")) for r in rows]
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()
    for k in range(len(values[0])):
        ys = [v[k] for v in values]
        label = labels[k] if k < len(labels) else f"observable {k}"
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel(parameter)
    ax.set_ylabel("expectation value")
    # Beside the axes, not over the curves.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


def qir_html(result: JsonMap, max_chars: int = 20_000) -> str:
    text = str(result.get("llvm_ir") or "")
    head = (
        f"QIR ({result.get('profile', '?')} profile): "
        f"{result.get('required_num_qubits', '?')} qubits, "
        f"{result.get('required_num_results', '?')} results"
    )
    cut = "\n… (truncated)" if len(text) > max_chars else ""
    return (
        f"<div class='qtd-qir'><b>{html.escape(head)}</b><pre style='max-height:24em;"
        f"overflow:auto'>{html.escape(text[:max_chars] + cut)}</pre></div>"
    )


def failure_message(row: TaskJson) -> str:
    """One line on why a task has no result: cancelled, or its error's first line."""
    first = (row.get("error") or "").strip().splitlines()
    why = first[0] if first else "no error message"
    if row.get("status") == TaskStatus.CANCELLED:
        return f"task {row.get('task_id')} was cancelled"
    return f"task {row.get('task_id')} failed: {why}"


def show_result(row: TaskJson, *, observables: Sequence[str] = ()) -> None:
    """Display one task's result the way its task_type calls for."""
    from IPython.display import HTML, display  # lazy: see the docstring

    from qtaskdist_jupyter.core import arrays  # lazy: numpy (see live_view's __main__)

    status = row.get("status")
    if status != TaskStatus.COMPLETED:
        display(HTML(f"<div class='qtd-error'>{html.escape(failure_message(row))}</div>"))
        return
    res = row.get("result") or {}
    title = row.get("name") or str(row.get("task_id", ""))[:8]
    if "llvm_ir" in res:
        display(HTML(qir_html(res)))
        return
    if "results" in res:
        parts = _objects(res["results"])
        if any(p.get("expectation_values") is not None for p in parts):
            _show(expectation_figure(parts, labels=list(observables)))
        for p in parts[:4]:
            counts = _inline_counts(p.get("counts"))
            if counts:
                _show(counts_figure(counts, f"{title} {p.get('parameters')}"))
        if len(parts) > 4:
            display(HTML(f"<i>… {len(parts) - 4} more bindings</i>"))
        return
    counts = _inline_counts(res.get("counts"))
    if counts:
        _show(counts_figure(counts, title))
    for key, ref in [(k, v) for k, v in res.items() if arrays.is_ref(v)]:
        # A stored array is summarized, never downloaded: its top states are in the row.
        display(HTML(array_summary_html(key, ref)))
        top = {str(e.get("bitstring")): _float(e.get("probability")) for e in _top(ref)}
        if top:
            _show(probabilities_figure(top, f"{title}: top {len(top)} of {key}"))
    _show_inline_arrays({k: v for k, v in res.items() if not arrays.is_ref(v)}, title)


def _show_inline_arrays(res: JsonMap, title: str) -> None:
    """A result's probabilities, statevector and expectation values held in its row."""
    from IPython.display import HTML, display  # lazy: see the docstring

    probs = res.get("probabilities")
    if isinstance(probs, dict | list):
        _show(probabilities_figure(_numbers(probs), f"{title}: probabilities"))
    sv = res.get("statevector")
    if isinstance(sv, list):
        probs = statevector_probabilities(sv)
        _show(probabilities_figure(probs, f"{title}: |statevector|²"))
    if res.get("expectation_values") is not None:
        vals = ", ".join(f"{v:.4g}" for v in _floats(res.get("expectation_values")))
        display(HTML(f"<div>expectation values: {html.escape(vals)}</div>"))


def array_summary_text(key: str, ref: Mapping[str, object]) -> str:
    """One line about a stored array: dtype, shape, sizes and its top states."""
    from qtaskdist_jupyter.core import arrays  # lazy: numpy (see live_view's __main__)

    shape = "×".join(str(d) for d in _list(ref.get("shape")))
    top = ", ".join(
        f"|{e.get('bitstring')}⟩ {_float(e.get('probability')):.3g}" for e in _top(ref)[:4]
    )
    first = " ".join(str(m) for m in _list(ref.get("first"))[:4])
    extra = f" · top: {top}" if top else (f" · first shots: {first}" if first else "")
    return (
        f"{key} {ref.get('dtype')} [{shape}] · "
        f"{arrays.human_bytes(int(_float(ref.get('nbytes') or 0)))} "
        f"(stored {arrays.human_bytes(int(_float(ref.get('stored_bytes') or 0)))}){extra}"
    )


def array_summary_html(key: str, ref: Mapping[str, object]) -> str:
    """``array_summary_text`` as HTML, the key in bold."""
    rest = array_summary_text(key, ref)[len(key) :]
    return (
        f"<div class='qtd-array-summary'><b>{html.escape(key)}</b>{html.escape(rest)}"
        " · <code>handle.result()[key]</code> downloads it</div>"
    )


def show_batch(rows: Sequence[TaskJson], *, observables: Sequence[str] = ()) -> None:
    """A sweep: one curve of expectation values, else the first few histograms."""
    from IPython.display import HTML, display  # lazy: see the docstring

    flat: list[JsonObject] = []
    for r in rows:
        res = r.get("result") or {}
        flat += _objects(res.get("results")) or ([res] if res else [])
    if any(p.get("expectation_values") is not None and p.get("parameters") for p in flat):
        _show(expectation_figure(flat, labels=list(observables)))
        return
    for r in rows[:4]:
        show_result(r, observables=observables)
    if len(rows) > 4:
        display(HTML(f"<i>… {len(rows) - 4} more tasks</i>"))


# ---- reading a result's JSON ---------------------------------------------------------
def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _objects(value: object) -> list[JsonObject]:
    """The JSON objects of a list (a result's ``results``, an array's ``top``)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _object(value: object) -> JsonMap:
    return value if isinstance(value, dict) else {}


def _top(ref: Mapping[str, object]) -> list[JsonObject]:
    """A stored array's top states: ``{"bitstring", "probability"}`` each."""
    return _objects(ref.get("top"))


def _float(value: object) -> float:
    """A JSON number (or numeric text) as a float; TypeError for anything else."""
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


def _floats(value: object) -> list[float]:
    return [_float(v) for v in value] if isinstance(value, list) else []


def _numbers(value: JsonObject | list[JsonValue]) -> dict[str, float] | list[float]:
    """Probabilities as a JSON object (bitstring → p) or a list, as numbers."""
    if isinstance(value, dict):
        return {k: _float(v) for k, v in value.items()}
    return [_float(v) for v in value]


def _inline_counts(value: object) -> dict[str, float] | None:
    """Counts held in the row (not a stored array's reference), or None (none or empty)."""
    from qtaskdist_jupyter.core import arrays  # lazy: numpy (see live_view's __main__)

    if not isinstance(value, dict) or not value or arrays.is_ref(value):
        return None
    return {str(k): v for k, v in value.items() if isinstance(v, int | float)}
