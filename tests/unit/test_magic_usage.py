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


def test_a_sweep_goes_to_submit_simulate_whole_with_its_chunk(bare_shell) -> None:
    # The magic parses --sweep and --chunk; Client.submit_simulate builds the payloads
    # (tests/unit/test_payloads.py), so the magic and the Python API split sweeps alike.
    calls: list[tuple[tuple, dict]] = []

    class Recorder:
        def submit_simulate(self, *args, **kwargs):
            calls.append((args, kwargs))
            return "handle"

    magics = bare_shell.magics_manager.registry["QtaskMagics"]
    magics._client = Recorder()
    try:
        bare_shell.run_cell(f"%%qtask simulate --shots 20 --sweep a=0:1:3 --chunk 2\n{BELL_QASM2}")
    finally:
        magics._client = None
    ((args, kwargs),) = calls
    assert len(args) == 1 and args[0].strip() == BELL_QASM2.strip()  # the cell's text
    assert kwargs["chunk"] == 2 and kwargs["shots"] == 20
    assert kwargs["parameter_bindings"] == [{"a": 0.0}, {"a": 0.5}, {"a": 1.0}]


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
