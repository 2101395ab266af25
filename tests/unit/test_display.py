"""Result display with hostile names: a title is user text, never mathtext."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from qtaskdist_jupyter.kernel import display


@pytest.mark.parametrize("name", [r"$\foo{$", "$x^$", "cost: $5 and $", r"\$"])
def test_show_result_draws_names_as_plain_text(name: str, monkeypatch) -> None:
    shown: list[Any] = []
    monkeypatch.setattr(display, "_show", lambda fig: shown.append(display._png(fig)))
    InteractiveShell.instance()  # IPython.display needs a shell to print to
    row = {
        "status": "completed",
        "name": name,
        "task_id": "0" * 32,
        "result": {"counts": {"00": 3, "11": 5}, "probabilities": {"00": 0.5, "11": 0.5}},
    }
    display.show_result(row)
    assert len(shown) == 2 and all(png.startswith(b"\x89PNG") for png in shown)
    fig = display.counts_figure({"0": 1}, name)
    assert fig.axes[0].get_title() == name  # the text as typed, "$" included


def test_a_many_qubit_states_bars_fill_their_axis() -> None:
    # 20 qubits in a uniform superposition: each probability is 2**-20.
    n = 20
    probs = {format(i, f"0{n}b"): 2.0**-n for i in range(0, 2**n, 2**n // 128)}
    fig = display.probabilities_figure(probs)
    ax = fig.axes[0]
    top = ax.get_ylim()[1]
    tallest = max(p.get_height() for p in ax.patches)
    assert tallest / top > 0.8, (tallest, top)  # not a sliver under a 0-1 axis
    assert ax.get_title().endswith("(top 64 of 128)")
    # 20-bit labels stand on end instead of running into each other.
    assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())


def test_the_legend_sits_beside_the_curves() -> None:
    xs = [t / 10 for t in range(9)]
    rows = [{"parameters": {"t": x}, "expectation_values": [x, -x]} for x in xs]
    fig = display.expectation_figure(rows)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes, over no curve


def test_axis_and_label_rules() -> None:
    assert display.value_axis_top([2.0**-20, 2.0**-21]) == pytest.approx(1.1 * 2.0**-20)
    assert display.value_axis_top([]) == 1.0
    assert display.label_rotation(["00", "11"]) == 0
    assert display.label_rotation(["0" * 20]) == 90
    assert display.shown_of(8, 8) == "" and display.shown_of(8, 1024) == " (top 8 of 1024)"
