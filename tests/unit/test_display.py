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
