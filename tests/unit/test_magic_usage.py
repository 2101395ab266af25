"""What ``%qtask`` refuses before it looks for a server: an unknown option or action, and
a cell action used as a line magic (or the reverse). No server exists here, so a refusal
that reached for one would show as a different error. The same refusals through a real
server: tests/e2e/test_magics.py (test_unknown_option)."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from qtaskdist_jupyter.core.errors import ApiError
from qtaskdist_jupyter.kernel.magic_helpers import is_qasm_text, retried_line, user_message
from qtaskdist_jupyter.kernel.magics import QtaskMagics
from tests.fixtures.circuits import BELL_QASM2


@pytest.fixture
def bare_shell(monkeypatch: pytest.MonkeyPatch) -> InteractiveShell:
    for name in ("QTASKDIST_SERVER_URL", "QTASKDIST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    ip = InteractiveShell.instance()
    ip.register_magics(QtaskMagics)
    return ip


def refusal(ip: InteractiveShell, cell: str) -> str:
    with capture_output() as cap:
        res = ip.run_cell(cell)
    assert isinstance(res.error_in_exec, UsageError), (res.error_in_exec, cap.stderr)
    return str(res.error_in_exec)


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        (f"%%qtask simulate --shotz 5\n{BELL_QASM2}", "unrecognized arguments: --shotz"),
        ("%qtask frobnicate", "unknown action 'frobnicate'"),
        ("%qtask simulate", "'simulate' is a cell magic"),
        ("%%qtask list\nx", "'list' is a line magic"),
        # A retry runs a task again: never the last handle by default.
        ("%qtask retry", "%qtask retry needs a task id"),
    ],
)
def test_refused_before_any_server_is_asked(
    bare_shell: InteractiveShell, cell: str, words: str
) -> None:
    assert words in refusal(bare_shell, cell)


def test_a_retried_task_waits_for_its_next_attempt() -> None:
    # The first attempt failed (attempt 1); the retry queues it for the second.
    assert retried_line("t1", {"status": "queued", "attempt": 1}) == (
        "task t1: queued for attempt 2"
    )
    assert retried_line("t1", {"status": "running", "attempt": 2}) == (
        "task t1: running (attempt 2)"
    )


def test_a_circuit_error_names_its_line_in_the_cell() -> None:
    exc = ApiError(
        "invalid OpenQASM 2: needed ';' (line 6, column 8)",
        status=422,
        error="invalid_circuit",
        line=6,
        column=8,
    )
    assert user_message(exc, 1).endswith("(line 6, column 8); line 7 of the cell")
    assert user_message(exc).endswith("(line 6, column 8)")  # a Python body: no cell line
    assert is_qasm_text("// a comment\n\nOPENQASM 2.0;\nqreg q[1];")
    assert not is_qasm_text("qc = QuantumCircuit(1)\nqc")
