"""Hostile circuits against the REST API (issue 23, the parsing side): every count a parser
would allocate for is bounded before it parses, numbers are converted only when ASCII
and short, loops count as unrolled, every nested QPY header is walked before loading,
and what still goes wrong inside a parser stays in a sandboxed child process.

The last test runs the hostile cases against a real ``jupyter server`` subprocess and
measures it: peak RSS growth and server CPU per request."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import Parameter

from devtools.launcher import ServerProcess
from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import simulate_spec

H2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
H3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
# The 90-byte request: one gate on physical qubit 10^8 (about 55 GB in qiskit).
PHYSICAL_1E8 = H3 + "h $100000000;\n"
_HEADER = struct.Struct("!H1cHIIQIQI")


def _rows(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


def _qpy(qc: QuantumCircuit) -> bytes:
    buf = io.BytesIO()
    qpy.dump(qc, buf)
    return buf.getvalue()


def _headers(raw: bytes, qubits: int) -> list[int]:
    """Offsets of the circuit headers of ``raw`` (QPY) claiming ``qubits`` qubits."""
    found = []
    for i in range(28, len(raw) - _HEADER.size):
        name, phase_type, phase_size, nq, *_ = _HEADER.unpack_from(raw, i)
        if phase_type == b"f" and phase_size == 8 and nq == qubits and name < 64:
            found.append(i)
    return found


def patched_if_body(qubits: int) -> str:
    """A valid QPY circuit whose if-body header is patched to claim ``qubits`` qubits."""
    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(0)
    raw = bytearray(_qpy(qc))
    top, body = _headers(bytes(raw), 1)
    assert top == 28, "the top-level header follows the circuit table"
    struct.pack_into("!I", raw, body + 5, qubits)
    return base64.b64encode(bytes(raw)).decode()


def patched_definition(qubits: int) -> str:
    """A custom gate whose definition's circuit header claims ``qubits`` qubits."""
    inner = QuantumCircuit(3, name="mine")
    inner.h(0)
    qc = QuantumCircuit(3)
    qc.append(inner.to_gate(), [0, 1, 2])
    raw = bytearray(_qpy(qc))
    (definition,) = [i for i in _headers(bytes(raw), 3) if i != 28]
    struct.pack_into("!I", raw, definition + 5, qubits)
    return base64.b64encode(bytes(raw)).decode()


def truncated_qpy() -> str:
    """Cut inside the layout, past every header: qiskit's Rust reader finds it."""
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    return base64.b64encode(_qpy(qc)[:-5]).decode()


def _sim(circuit: str, **payload: Any) -> dict[str, Any]:
    return simulate_spec(circuit, payload=payload)


# What each hostile case must be answered with: (status, error code, field, detail part).
HOSTILE: dict[str, tuple[dict[str, Any], tuple[int, str, str, str]]] = {
    "physical_1e8": (_sim(PHYSICAL_1E8), (422, "limit_exceeded", "circuit", "qubits")),
    "physical_3e6": (
        _sim(H3 + "h $3000000;\n"),
        (422, "limit_exceeded", "circuit", "qubits"),
    ),
    "superscript_size": (
        _sim(H2 + "qreg q[1²];\nh q;\n"),
        (422, "invalid_circuit", "circuit", "ASCII"),
    ),
    "superscript_const": (
        _sim(H3 + "const uint n = 1²;\nqubit[n] q;\nh q;\n"),
        (422, "invalid_circuit", "circuit", "ASCII"),
    ),
    "digits_5000": (
        _sim(H2 + "qreg q[" + "9" * 5000 + "];\nh q;\n"),
        (422, "limit_exceeded", "circuit", "12"),
    ),
    "loop_1e9": (
        _sim(H3 + "qubit[2] q;\nfor uint i in [0:1000000000] { h q; }\n"),
        (422, "limit_exceeded", "circuit", "instructions"),
    ),
    "nested_loops": (
        _sim(H3 + "qubit q;\nfor int i in [0:999] { for int j in [1:1000] { x q; } }\n"),
        (422, "limit_exceeded", "circuit", "instructions"),
    ),
    "loop_unbounded": (
        _sim(H3 + "input int n;\nqubit q;\nfor int i in [0:n] { x q; }\n"),
        (422, "invalid_circuit", "circuit", "loop bound"),
    ),
    "qpy_if_body_1e6": (
        _sim(patched_if_body(10**6)),
        (422, "limit_exceeded", "circuit", "nested circuit"),
    ),
    "qpy_if_body_max": (
        _sim(patched_if_body(2**32 - 1)),
        (422, "limit_exceeded", "circuit", "nested circuit"),
    ),
    "qpy_definition_1e6": (
        _sim(patched_definition(10**6)),
        (422, "limit_exceeded", "circuit", "qubits"),
    ),
    "qpy_truncated": (_sim(truncated_qpy()), (422, "invalid_circuit", "circuit", "QPY")),
    "provider_option_900k": (
        {
            "task_type": "backend_run",
            "payload": {
                "circuit": BELL_QASM2,
                "device_id": "local",
                "provider_options": {"x": "a" * 900_000},
            },
        },
        (422, "invalid_input", "payload.provider_options", "1024"),
    ),
}


def _check_refusal(name: str, code: int, err: Any) -> None:
    status, error, field, part = HOSTILE[name][1]
    assert code == status, (name, code, err)
    assert err["error"] == error and err["field"] == field and part in err["detail"], (name, err)
    detail = err["detail"]
    assert "\n" not in detail and "\x1b" not in detail and ".rs:" not in detail, (name, detail)
    assert not any("\u2500" <= ch <= "\u259f" for ch in detail), (name, detail)


# ---- each finding against the in-process server ----------------------------------------
async def test_physical_qubits_are_counted_by_the_scan(api, database_url) -> None:
    """H1: ``h $n;`` is refused from the scan, in milliseconds, for any n over the limit."""
    code, ok = await api("POST", "tasks", body=_sim(BELL_QASM2))  # the parse child is warm
    assert code == 201, ok
    for name in ("physical_1e8", "physical_3e6"):
        started = time.monotonic()
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        _check_refusal(name, code, err)
        assert time.monotonic() - started < 1.0, name
    # A program on physical qubits within the limit still runs.
    code, ok = await api("POST", "tasks", body=_sim(H3 + "h $2;\ncx $0, $1;\n"))
    assert code == 201, ok
    assert _rows(database_url) == 2


async def test_numbers_are_ascii_and_bounded_before_conversion(api, database_url) -> None:
    """M1: superscript digits and a 5,000-digit size are a 422 naming the field, not a 500."""
    for name in ("superscript_size", "superscript_const", "digits_5000"):
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        _check_refusal(name, code, err)
    code, ok = await api("POST", "tasks", body=_sim(H2 + "qreg q[3];\nh q;\n"))
    assert code == 201, ok
    assert _rows(database_url) == 1


async def test_loops_count_as_unrolled(api, database_url) -> None:
    """M5: a for loop counts its body times its range; nested loops multiply; a range the
    scan cannot bound is refused; a while loop's body counts once."""
    for name in ("loop_1e9", "nested_loops", "loop_unbounded"):
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        _check_refusal(name, code, err)
    small = H3 + "qubit q;\nbit c;\nfor int i in [0:2:10] { x q; }\n"
    small += "c = measure q;\nwhile (c) { x q; c = measure q; }\n"
    code, ok = await api("POST", "tasks", body=_sim(small))
    assert code == 201, ok
    assert _rows(database_url) == 1


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"limits": {"max_instructions": 100}}}])
async def test_loop_count_is_exact_at_the_limit(api) -> None:
    """[0:9] runs 10 times, [0:2:8] 5 times: 10 * 5 * 2 = 100 instructions pass, 101 don't."""
    body = "qubit q;\nfor int i in [0:9] { for int j in [0:2:8] { x q; h q; } }\n"
    code, ok = await api("POST", "tasks", body=_sim(H3 + body))
    assert code == 201, ok
    code, err = await api("POST", "tasks", body=_sim(H3 + body + "x q;\n"))
    assert code == 422 and err["limit"] == "instructions" and err["value"] == 101, err


async def test_nested_qpy_headers_are_walked_before_loading(api, database_url) -> None:
    """H2: an if-body or a definition claiming 10^6 (or 2^32 - 1) qubits is refused by the
    header walk, in milliseconds; the unpatched circuits are accepted."""
    for name in ("qpy_if_body_1e6", "qpy_if_body_max", "qpy_definition_1e6"):
        started = time.monotonic()
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        _check_refusal(name, code, err)
        assert time.monotonic() - started < 1.0, name
    for ok_circuit in (patched_if_body(1), patched_definition(3)):
        code, ok = await api("POST", "tasks", body=_sim(ok_circuit))
        assert code == 201, ok
    assert _rows(database_url) == 2


async def test_binding_names_are_checked_against_the_circuit(api, database_url) -> None:
    """L6: unknown and missing parameter names are a 422 that names them."""
    theta = Parameter("theta")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    qc.measure_all()
    circuit = base64.b64encode(_qpy(qc)).decode()
    code, err = await api(
        "POST", "tasks", body=_sim(circuit, parameter_bindings=[{"theta": 1.0}, {"phi": 2.0}])
    )
    assert code == 422 and err["field"] == "payload.parameter_bindings.1", err
    assert "unknown ['phi']" in err["detail"] and "missing ['theta']" in err["detail"], err
    convert = {
        "task_type": "c_qir_convert",
        "payload": {"circuit": circuit, "parameter_bindings": {"phi": 1.0}},
    }
    code, err = await api("POST", "tasks", body=convert)
    assert code == 422 and err["field"] == "payload.parameter_bindings", err
    assert "unknown ['phi']" in err["detail"], err
    code, ok = await api("POST", "tasks", body=_sim(circuit, parameter_bindings=[{"theta": 1.0}]))
    assert code == 201, ok
    assert _rows(database_url) == 1


async def test_provider_options_bounded_and_parser_errors_one_clean_line(api, database_url) -> None:
    """L7: a 900 KB option value and 33 keys are refused; a truncated QPY's error is one
    line without qiskit's Rust backtrace banner, box-drawing characters or source paths."""
    for name in ("provider_option_900k", "qpy_truncated"):
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        _check_refusal(name, code, err)
    many = {"task_type": "backend_run", "payload": {"circuit": BELL_QASM2, "device_id": "local"}}
    many["payload"]["provider_options"] = {f"k{i}": i for i in range(33)}
    code, err = await api("POST", "tasks", body=many)
    assert code == 422 and err["field"] == "payload.provider_options", err
    assert "33 keys; the limit is 32" in err["detail"], err
    assert _rows(database_url) == 0


# ---- the second line of defence: the parse sandbox ---------------------------------------
_BIG_QASM2 = H2 + "qreg q[30];\ncreg c[30];\n"
_BIG_QASM2 += "".join(f"cx q[{i % 29}],q[{i % 29 + 1}];\n" for i in range(60_000))


@pytest.mark.parametrize(
    "qtd_config",
    [{"QtaskdistApp": {"limits": {"parse_memory_bytes": 16 * 2**20, "parse_workers": 1}}}],
)
async def test_a_parse_that_runs_out_of_memory_is_refused_and_the_server_goes_on(
    api, database_url
) -> None:
    """A circuit within every counted limit whose parse needs more than the child may
    have: 422 naming the variable, and the next submit is served by a fresh child."""
    code, err = await api("POST", "tasks", body=_sim(_BIG_QASM2))
    assert code == 422 and err["limit"] == "parse", err
    assert "QTASKDIST_PARSE_MEMORY_BYTES" in err["detail"], err
    code, ok = await api("POST", "tasks", body=_sim(BELL_QASM2))
    assert code == 201, ok
    assert _rows(database_url) == 1


@pytest.mark.parametrize(
    "qtd_config", [{"QtaskdistApp": {"limits": {"parse_time_s": 1.0, "parse_workers": 1}}}]
)
async def test_a_parse_past_its_deadline_is_refused_and_the_server_goes_on(
    api, database_url
) -> None:
    code, ok = await api("POST", "tasks", body=_sim(BELL_QASM2))  # the child is warm now
    assert code == 201, ok
    code, err = await api("POST", "tasks", body=_sim(_BIG_QASM2))
    assert code == 422 and err["limit"] == "parse", err
    assert "QTASKDIST_PARSE_TIME_S" in err["detail"], err
    code, ok = await api("POST", "tasks", body=_sim(BELL_QASM2.replace("h q[0]", "x q[0]")))
    assert code == 201, ok
    assert _rows(database_url) == 2


# ---- a real server process, measured ---------------------------------------------------
def _post(server: ServerProcess, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(
        server.url + "qtaskdist/api/tasks",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {server.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_hostile_cases_against_a_server_process(tmp_path, database_url, redis_url) -> None:
    """All the hostile cases against ``jupyter server`` in a process of its own: each is
    refused, the server's peak RSS grows by less than 200 MB over all of them, and no
    request takes more than 2 s of the server's CPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTASKDIST_")}
    server = ServerProcess(
        tmp_path,
        env=env,
        log_path=tmp_path / "server.log",
        extra_args=[
            f"--QtaskdistApp.database_url={database_url}",
            f"--QtaskdistApp.redis_url={redis_url}",
            "--QtaskdistApp.local_workers=0",
            "--ServerApp.allow_root=True",
            f"--QtaskdistApp.home={tmp_path / 'qtd-home'}",
        ],
    )
    server.env = env
    server.start(timeout_s=120)
    try:
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        assert _post(server, _sim(BELL_QASM2))[0] == 201  # warm: the parse child answers
        rss_before = proc.memory_info().rss
        cpu_s: dict[str, float] = {}
        for name, (body, _) in HOSTILE.items():
            before = proc.cpu_times()
            code, err = _post(server, body)
            after = proc.cpu_times()
            cpu_s[name] = (after.user - before.user) + (after.system - before.system)
            _check_refusal(name, code, err)
        growth = _peak_rss(proc.pid) - rss_before
        assert proc.is_running() and _post(server, _sim(BELL_QASM2))[0] == 201
    finally:
        server.stop()
    print(f"peak RSS growth {growth / 2**20:.1f} MB; server CPU per request (s): {cpu_s}")
    assert growth < 200 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MB"
    assert max(cpu_s.values()) < 2.0, cpu_s
    assert _rows(database_url) == 2
