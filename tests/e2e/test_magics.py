"""%%qtask / %qtask through a real IPython shell, a real server extension and a real worker."""

from __future__ import annotations

import base64
import math
import uuid
from typing import Any

import pyqir
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from qtaskdist_jupyter.kernel.client import BatchHandle, TaskHandle
from qtaskdist_jupyter.kernel.magics import QtaskMagics
from tests.fixtures.circuits import BELL_QASM2, BELL_QASM3
from tests.fixtures.notebook import NbServer


def run(ip: InteractiveShell, cell: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        res = ip.run_cell(cell)
    return res, cap


def mimetypes(cap: CapturedIO) -> set[str]:
    return {k for out in cap.outputs for k in out.data}


def user_error(res: Any, cap: CapturedIO) -> str:
    """The one line a user sees; proves it is a UsageError, not a traceback."""
    assert isinstance(res.error_in_exec, UsageError), (res.error_in_exec, cap.stderr)
    assert "Traceback" not in cap.stdout + cap.stderr
    # (tqdm's progress bar also writes to stderr; the error is the one UsageError line)
    lines = [ln for ln in cap.stderr.splitlines() if "Error" in ln]
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), cap.stderr
    return lines[0]


def test_bell_counts_come_back(shell: InteractiveShell) -> None:
    res, cap = run(
        shell,
        "%%qtask simulate --shots 400 --seed 5 --time-limit 30 --out qt_bell --wait\n" + BELL_QASM2,
    )
    assert res.error_in_exec is None, cap.stderr
    assert "image/png" in mimetypes(cap)  # the histogram
    h = shell.user_ns["qt_bell"]
    assert isinstance(h, TaskHandle) and h.row["status"] == "completed"
    assert h.row["payload"]["time_limit_s"] == 30  # the task's own limit, not the wait
    counts = h.counts()
    assert isinstance(counts, dict)  # one circuit: one counts dict
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 400


def test_python_body_and_qasm3(shell: InteractiveShell) -> None:
    body = (
        "from qiskit import QuantumCircuit\n"
        "qc = QuantumCircuit(2)\nqc.x(0)\nqc.measure_all()\n"
        "[qc, qc]"
    )
    res, cap = run(shell, f"%%qtask simulate --shots 50 --out qt_two\n{body}")
    assert res.error_in_exec is None, cap.stderr
    batch = shell.user_ns["qt_two"]
    assert isinstance(batch, BatchHandle) and len(batch) == 2
    assert batch.counts(timeout_s=120) == [{"01": 50}, {"01": 50}]
    res, cap = run(shell, f"%%qtask simulate --shots 30 --out qt_q3 --wait\n{BELL_QASM3}")
    assert res.error_in_exec is None, cap.stderr
    assert sum(shell.user_ns["qt_q3"].counts().values()) == 30


def test_sweep_of_16_completes_as_one_batch(shell: InteractiveShell) -> None:
    body = (
        'OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float[64] theta;\n'
        "qubit[1] q;\nbit[1] c;\nry(theta) q[0];\nc = measure q;\n"
    )
    cell = f"%%qtask simulate --shots 64 --sweep theta=0:3.14159:16 --observables Z --out qt_sw --wait\n{body}"  # noqa: E501
    res, cap = run(shell, cell)
    assert res.error_in_exec is None, cap.stderr
    assert "image/png" in mimetypes(cap)  # expectation values against theta
    sweep = shell.user_ns["qt_sw"]
    assert isinstance(sweep, BatchHandle) and len(sweep) == 16
    rows = sweep.rows()
    assert {r["batch_id"] for r in rows} == {sweep.batch_id}
    assert [r["status"] for r in rows] == ["completed"] * 16
    points = [p for res_ in sweep.results() for p in res_["results"]]
    thetas = [p["parameters"]["theta"] for p in points]
    assert thetas == pytest.approx([i * 3.14159 / 15 for i in range(16)])
    # <Z> of ry(theta)|0> is cos(theta): the sweep really bound each point.
    for p in points:
        assert p["expectation_values"][0] == pytest.approx(
            math.cos(p["parameters"]["theta"]), abs=1e-6
        )
    assert sweep.status_counts() == {"completed": 16}


def test_sweep_in_chunks(shell: InteractiveShell, nb_client: Any) -> None:
    body = 'OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float[64] a;\nqubit q;\nbit c;\nrx(a) q;\nc = measure q;\n'  # noqa: E501
    res, cap = run(
        shell, f"%%qtask simulate --shots 20 --sweep a=0:1:6 --chunk 4 --out qt_ch\n{body}"
    )
    assert res.error_in_exec is None, cap.stderr
    batch = shell.user_ns["qt_ch"]
    assert len(batch) == 2  # 6 bindings in chunks of 4
    assert [len(r["results"]) for r in batch.results(timeout_s=120)] == [4, 2]


def test_convert_returns_verified_qir(shell: InteractiveShell) -> None:
    res, cap = run(shell, f"%%qtask convert --profile base --out qt_qir --wait\n{BELL_QASM2}")
    assert res.error_in_exec is None, cap.stderr
    assert any("QIR" in o.data.get("text/html", "") for o in cap.outputs)
    result = shell.user_ns["qt_qir"].result()
    module = pyqir.Module.from_bitcode(pyqir.Context(), base64.b64decode(result["bitcode_base64"]))
    assert module.verify() is None
    (entry,) = [f for f in module.functions if pyqir.is_entry_point(f)]
    assert pyqir.required_num_qubits(entry) == 2 and result["required_num_qubits"] == 2
    assert "__quantum__qis__h__body" in result["llvm_ir"]
    assert result["verification"]["status"] == "matched"  # executed in qir-runner


def test_convert_static_skips_the_execution_check(shell: InteractiveShell) -> None:
    res, cap = run(shell, f"%%qtask convert --verify static --out qt_qs --wait\n{BELL_QASM2}")
    assert res.error_in_exec is None, cap.stderr
    result = shell.user_ns["qt_qs"].result()
    assert result["verification"]["status"] == "skipped"
    assert "static" in result["verification"]["reason"]


def test_run_device_local_completes(shell: InteractiveShell) -> None:
    res, cap = run(
        shell,
        "%%qtask run --device local --shots 100 --time-limit 60 --out qt_run --wait\n" + BELL_QASM2,
    )
    assert res.error_in_exec is None, cap.stderr
    h = shell.user_ns["qt_run"]
    assert h.row["status"] == "completed" and h.row["task_type"] == "backend_run"
    assert h.row["payload"]["time_limit_s"] == 60
    assert sum(h.counts().values()) == 100 and set(h.counts()) <= {"00", "11"}


def test_cancel_retry_show_list_status(shell: InteractiveShell, nb_server: NbServer) -> None:
    # A pending task (never enqueued) stays put, so the cancel is deterministic.
    spec = {
        "task_type": "simulate",
        "payload": {"circuit": BELL_QASM2, "shots": 10},
        "name": "parked",
    }
    tid = nb_server.rest("POST", "tasks", json=spec)["task_id"]
    res, cap = run(shell, f"%qtask cancel {tid}")
    assert res.error_in_exec is None and "cancelled" in cap.stdout, cap.stderr
    assert nb_server.rest("GET", f"tasks/{tid}")["status"] == "cancelled"

    res, cap = run(shell, f"%qtask cancel {tid}")  # already finished: one clear line
    assert "cannot be cancelled" in user_error(res, cap)

    res, cap = run(shell, f"%qtask retry {tid}")
    # The live worker may claim it before the magic prints the fresh row.
    assert res.error_in_exec is None, cap.stderr
    assert any(f": {s}" in cap.stdout for s in ("queued", "running", "completed")), cap.stdout
    res, cap = run(shell, f"%qtask wait {tid} --timeout 120")
    assert res.error_in_exec is None and "completed" in cap.stdout, cap.stderr

    res, cap = run(shell, f"%qtask show {tid}")
    assert res.error_in_exec is None and "image/png" in mimetypes(cap)
    res, cap = run(shell, "%qtask show parked")  # by its name
    assert res.error_in_exec is None and "image/png" in mimetypes(cap), cap.stderr
    assert tid in "".join(o.data.get("text/plain", "") for o in cap.outputs)
    res, cap = run(shell, "%qtask show no-such-name")
    assert "no task, batch or task name 'no-such-name'" in user_error(res, cap)
    res, cap = run(shell, "%qtask list --status completed --limit 500")
    text = "".join(o.data.get("text/plain", "") for o in cap.outputs)
    assert tid[:8] in text and "parked" in text
    res, cap = run(shell, "%qtask status")
    assert res.error_in_exec is None
    assert "database: ok" in cap.stdout and "redis:    ok" in cap.stdout
    assert "1 alive" in cap.stdout or "alive of" in cap.stdout


def test_ids_by_the_start_the_table_shows(shell: InteractiveShell, nb_server: NbServer) -> None:
    def park(batch_id: str | None = None) -> str:
        """A pending task (never enqueued: it stays put) of this user, in ``batch_id``."""
        spec = {"task_type": "simulate", "payload": {"circuit": BELL_QASM2, "shots": 10}}
        spec |= {"name": "short", **({"batch_id": batch_id} if batch_id else {})}
        return nb_server.rest("POST", "tasks", json=spec)["task_id"]

    def text(cap: CapturedIO) -> str:
        return cap.stdout + "".join(o.data.get("text/plain", "") for o in cap.outputs)

    start = str(uuid.uuid4())[:8]
    first, second = start + str(uuid.uuid4())[8:], start + str(uuid.uuid4())[8:]
    tid, in_first = park(), [park(first), park(first)]
    in_second = park(second)

    res, cap = run(shell, f"%qtask cancel {tid[:8]}")  # the 8 characters of its row
    assert res.error_in_exec is None and f"task {tid}: cancelled" in cap.stdout, cap.stderr
    res, cap = run(shell, f"%qtask show {tid[:8]}")
    assert res.error_in_exec is None and tid in text(cap), cap.stderr
    # Two batches share these 8 characters: one line, nothing cancelled.
    res, cap = run(shell, f"%qtask cancel {start}")
    assert "ids of 2 of your tasks and batches" in user_error(res, cap)
    assert {nb_server.rest("GET", f"tasks/{t}")["status"] for t in in_first} == {"pending"}
    res, cap = run(shell, f"%qtask cancel {first[:13]}")  # one more digit: the batch
    assert res.error_in_exec is None and f"batch {first}: cancelled 2" in cap.stdout, cap.stderr
    assert {nb_server.rest("GET", f"tasks/{t}")["status"] for t in in_first} == {"cancelled"}
    assert nb_server.rest("GET", f"tasks/{in_second}")["status"] == "pending"
    res, cap = run(shell, f"%qtask list --batch {second[:13]}")
    assert res.error_in_exec is None and in_second[:8] in text(cap), cap.stderr
    assert in_first[0][:8] not in text(cap)
    res, cap = run(shell, f"%qtask retry {first[:13]}")
    assert "takes a task id" in user_error(res, cap)

    cell = f"from qtaskdist_jupyter import Client\nqt_h = Client().handle({tid[:8]!r})"
    res, cap = run(shell, cell)
    assert res.error_in_exec is None, cap.stderr
    assert shell.user_ns["qt_h"].task_id == tid and shell.user_ns["qt_h"].row["task_id"] == tid


def test_table_magic_returns_the_widget(shell: InteractiveShell, nb_server: NbServer) -> None:
    res, cap = run(shell, "qt_table = %qtask table --status completed")
    assert res.error_in_exec is None, cap.stderr
    table = shell.user_ns["qt_table"]
    assert table.base_url == "/" and table.status == "completed"
    assert table.token == ""  # the browser authenticates with its own cookie
    data, _ = table._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "<table>" in data["text/html"]  # the fallback for front ends without widgets


def test_help() -> None:
    assert "%%qtask simulate" in (QtaskMagics.qtask.__doc__ or "")
    assert "--sweep" in (QtaskMagics.qtask.__doc__ or "")  # magic_arguments' usage


# ---- user errors: one clear line each ------------------------------------------------
def test_unknown_option(shell: InteractiveShell) -> None:
    res, cap = run(shell, f"%%qtask simulate --shotz 5\n{BELL_QASM2}")
    assert "unrecognized arguments: --shotz" in user_error(res, cap)
    res, cap = run(shell, "%qtask frobnicate")
    assert "unknown action 'frobnicate'" in user_error(res, cap)


def test_invalid_circuit_names_line_and_column(shell: InteractiveShell) -> None:
    bad = BELL_QASM2.replace("cx q[0],q[1];", "cx q[0] q[1];")
    res, cap = run(shell, f"%%qtask simulate\n{bad}")
    line = user_error(res, cap)
    assert "invalid circuit" in line and "line 6" in line, line
    # The circuit's line 6 is the cell's line 7 (under the %%qtask line).
    assert "line 7 of the cell" in line, line


def test_timeout_while_waiting(shell: InteractiveShell, nb_server: NbServer) -> None:
    spec = {"task_type": "simulate", "payload": {"circuit": BELL_QASM2, "shots": 10}}
    tid = nb_server.rest("POST", "tasks", json=spec)["task_id"]  # pending forever
    try:
        res, cap = run(shell, f"%qtask wait {tid} --timeout 1.5")
        assert "timed out after 1.5 s" in user_error(res, cap)
    finally:
        nb_server.rest("POST", f"tasks/{tid}/cancel")


def test_no_server_found(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QTASKDIST_SERVER_URL")
    monkeypatch.delenv("QTASKDIST_TOKEN")
    shell.register_magics(QtaskMagics)
    res, cap = run(shell, "%qtask list")
    line = user_error(res, cap)
    assert "no qtaskdist server" in line and "jupyter server extension enable" in line


def test_server_not_reachable(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKDIST_SERVER_URL", "http://127.0.0.1:9/")
    shell.register_magics(QtaskMagics)
    res, cap = run(shell, f"%%qtask simulate\n{BELL_QASM2}")
    assert "not reachable" in user_error(res, cap)


def test_cell_without_circuit(shell: InteractiveShell) -> None:
    res, cap = run(shell, "%%qtask simulate\nx = 1\nx + 1")
    assert "expected a QuantumCircuit" in user_error(res, cap)
    res, cap = run(shell, "%qtask simulate")
    assert "is a cell magic" in user_error(res, cap)


def test_services_down(nb_server: NbServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second server whose Redis is not there: submitting says the services are down."""
    from tests.fixtures.notebook import start_server, stop_server

    down = start_server(
        tmp_path, nb_server.database_url, "redis://127.0.0.1:1/0", local_workers=0,
        wait_worker=False,
    )  # fmt: skip
    try:
        monkeypatch.setenv("QTASKDIST_SERVER_URL", down.url)
        monkeypatch.setenv("QTASKDIST_TOKEN", down.token)
        ip = InteractiveShell.instance()
        ip.register_magics(QtaskMagics)
        res, cap = run(ip, f"%%qtask simulate\n{BELL_QASM2}")
        err = user_error(res, cap)
        assert "services are down: the task queue is unreachable" in err, err
        assert "127.0.0.1" not in err  # no service address in what a user reads
        res, cap = run(ip, "%qtask status")
        assert res.error_in_exec is None and "redis:    DOWN" in cap.stdout, cap.stdout
        assert "database: ok" in cap.stdout
    finally:
        stop_server(down)


def test_statevector_and_probabilities_are_returned_and_drawn(shell: InteractiveShell) -> None:
    cell = "%%qtask simulate --shots 100 --seed 3 --statevector --probabilities --out qt_sv --wait"
    res, cap = run(shell, f"{cell}\n{BELL_QASM2}")
    assert res.error_in_exec is None, cap.stderr
    pngs = [out for out in cap.outputs if "image/png" in out.data]
    assert len(pngs) == 3  # counts, probabilities, |statevector|²
    result = shell.user_ns["qt_sv"].row["result"]
    amplitudes = [complex(re, im) for re, im in result["statevector"]]
    assert [abs(a) ** 2 for a in amplitudes] == pytest.approx([0.5, 0, 0, 0.5])
    assert result["probabilities"] == pytest.approx({"00": 0.5, "11": 0.5})
    assert sum(result["counts"].values()) == 100
