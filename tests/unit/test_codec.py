"""The circuit codec against real qiskit parsers: includes, limits, clean errors, QPY."""

from __future__ import annotations

import base64
import io
import struct
import time
from collections import Counter
from pathlib import Path

import pytest
from qiskit import QuantumCircuit, qasm2, qasm3, qpy
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.random import random_circuit

from qtaskdist_jupyter.core.circuits import codec, qasm_scan
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import (
    CircuitError,
    IncludeRefused,
    LimitExceeded,
    PayloadTooLarge,
)

LIMITS = Limits()
H2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
H3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


def _tower(levels: int, qasm3_syntax: bool = False) -> str:
    """g_k calls g_{k-1} twice: 2**levels instructions once expanded."""
    head = H3 + "qubit[1] q;\n" if qasm3_syntax else H2 + "qreg q[1];\n"
    lines = [head, "gate g0 a { x a; }\n"]
    lines += [f"gate g{k} a {{ g{k - 1} a; g{k - 1} a; }}\n" for k in range(1, levels + 1)]
    lines.append(f"g{levels} q[0];\n")
    return "".join(lines)


def _qpy_b64(circuit: QuantumCircuit) -> bytes:
    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    return buf.getvalue()


# ---------------------------------------------------------------- real-world input
def test_qasm2_dumps_output_with_legacy_gates_loads() -> None:
    qc = QuantumCircuit(3, 3)
    qc.sx(0)
    qc.rzz(0.3, 0, 1)
    qc.cswap(0, 1, 2)
    qc.ch(1, 2)
    qc.u(0.1, 0.2, 0.3, 0)
    qc.p(0.4, 2)
    qc.rzx(0.5, 0, 2)  # not in qelib1.inc: dumps writes a `gate` definition for it
    qc.barrier()
    qc.measure(range(3), range(3))
    text = qasm2.dumps(qc)
    with pytest.raises(qasm2.QASM2ParseError):
        qasm2.loads(text)  # strict qiskit refuses; the codec must not
    loaded = codec.load_circuit(text, limits=LIMITS)
    assert loaded.num_qubits == 3 and loaded.num_clbits == 3
    assert [c.name for c in loaded.cregs] == ["c"]
    assert loaded.count_ops() == qc.count_ops()
    info = codec.inspect_circuit(text, limits=LIMITS)
    assert info.format == "qasm2" and info.parameters == []
    # rzx is a user gate here, so the expanded count exceeds the 10 top-level operations
    assert info.num_instructions > len(loaded.data) == len(qc.data)


def test_user_gate_blocks_and_broadcast_count() -> None:
    src = H2 + (
        "qreg q[3];\ncreg c[3];\n"
        "gate pair(t) a, b { cx a, b; rz(t) b; }\n"
        "pair(0.1) q[0], q[1];\nh q;\nbarrier q;\nmeasure q -> c;\n"
    )
    info = codec.inspect_circuit(src, limits=LIMITS)
    assert (info.num_qubits, info.num_clbits) == (3, 3)
    assert info.num_instructions == 2 + 3 + 1 + 3
    ops = codec.load_circuit(src, limits=LIMITS).count_ops()
    assert ops["pair"] == 1 and ops["measure"] == 3 and ops["barrier"] == 1


def test_random_circuit_property() -> None:
    for seed in range(8):
        qc = random_circuit(4, 5, max_operands=3, measure=True, seed=seed)
        loaded = codec.load_circuit(qasm2.dumps(qc), limits=LIMITS)
        assert loaded.num_qubits == qc.num_qubits
        assert dict(loaded.count_ops()) == dict(qc.count_ops()), seed


# ---------------------------------------------------------------- QASM 3
def test_qasm3_with_while_loop_loads() -> None:
    src = H3 + (
        "qubit[2] q;\nbit[2] c;\nh q[0];\nc[0] = measure q[0];\n"
        "while (c[0] == false) {\n  h q[0];\n  c[0] = measure q[0];\n}\n"
        "for int i in [0:3] { x q[1]; }\n"
    )
    qc = codec.load_circuit(src, limits=LIMITS)
    assert {"while_loop", "for_loop"} <= set(qc.count_ops())
    info = codec.inspect_circuit(src, limits=LIMITS)
    assert info.format == "qasm3" and info.num_qubits == 2


def test_qasm3_gate_definitions_and_parameters() -> None:
    src = H3 + "input float theta;\nqubit[2] q;\ngate g(a) x { rx(a) x; }\n"
    src += "g(theta) q[1];\ncx q[0], q[1];\n"
    info = codec.inspect_circuit(src, limits=LIMITS)
    assert info.parameters == ["theta"] and info.num_qubits == 2


def test_qasm3_syntax_error_has_position() -> None:
    with pytest.raises(CircuitError) as err:
        codec.load_circuit(H3 + "qubit[2] q;\nh q[0]\n", limits=LIMITS)
    assert err.value.line == 5
    with pytest.raises(CircuitError) as err:
        codec.load_circuit(H3 + "qubit[2] q;\nhx q[0];\n", limits=LIMITS)
    assert (err.value.line, err.value.column) == (4, 1) and "hx" in str(err.value)


# ---------------------------------------------------------------- includes
@pytest.mark.parametrize(
    "src",
    [
        'OPENQASM 2.0;\ninclude "/etc/passwd";\nqreg q[1];\n',
        'OPENQASM 2.0;\ninclude "other.inc";\nqreg q[1];\n',
        'OPENQASM 2.0;\ninclude "../x";\nqreg q[1];\n',
        'OPENQASM 2.0;\ninclude "qelib1.inc/../../etc/passwd";\nqreg q[1];\n',
        'OPENQASM 2.0;\ninclude "stdgates.inc";\nqreg q[1];\n',
        "OPENQASM 2.0;\ninclude /etc/passwd;\nqreg q[1];\n",
        "OPENQASM 3.0;\ninclude '/etc/passwd';\nqubit q;\n",
        'OPENQASM 3.0;\ninclude "qelib1.inc";\nqubit q;\n',
        # a comment ended by a bare CR: some lexer might see the include, so we do
        'OPENQASM 2.0;\n// note\rinclude "/etc/passwd";\nqreg q[1];\n',
    ],
)
def test_foreign_includes_refused_with_line(src: str) -> None:
    with pytest.raises(IncludeRefused) as err:
        codec.load_circuit(src, limits=LIMITS)
    assert err.value.line == 2


def test_escaped_string_refused() -> None:
    with pytest.raises(CircuitError):
        codec.load_circuit('OPENQASM 3.0;\ninclude "a\\" // ";\nqubit q;\n', limits=LIMITS)


@pytest.mark.parametrize("fmt", ["qasm2", "qasm3"])
def test_included_file_content_never_leaks(tmp_path: Path, fmt: str) -> None:
    secret = tmp_path / "secret.inc"
    secret.write_text("TOPSECRET_MARKER_1234 qreg\n")
    head = "OPENQASM 2.0;" if fmt == "qasm2" else "OPENQASM 3.0;"
    for src in (
        f'{head}\ninclude "{secret}";\n',
        f'{head}\n\n  include "{secret}" ;\n',
        f'{head}\ninclude "stdgates.inc";\ninclude "{secret}";\n',
    ):
        with pytest.raises(IncludeRefused) as err:
            codec.load_circuit(src, fmt, limits=LIMITS)
        assert "TOPSECRET" not in str(err.value) and "TOPSECRET" not in str(err.value.to_json())
    # QASM 2 has no block comments; ours hides the include, qiskit fails at the "/".
    src = f'OPENQASM 2.0;\nqreg q[1];\n/* include "{secret}"; */\n'
    with pytest.raises(CircuitError) as err2:
        codec.load_circuit(src, limits=LIMITS)
    assert "TOPSECRET" not in str(err2.value)


def test_includes_in_comments_are_not_includes() -> None:
    src = H2 + '// include "/etc/passwd";\nqreg q[1];\nh q[0]; // include "x"\n'
    assert codec.load_circuit(src, limits=LIMITS).num_qubits == 1
    src = H3 + '/* include "/etc/passwd";\n include "x"; */\nqubit q;\nh q;\n'
    assert codec.load_circuit(src, limits=LIMITS).count_ops()["h"] == 1
    # a comment that ends the file, without a newline, is still a comment
    src = H3 + 'qubit q;\nh q; // include "/etc/passwd";'
    assert codec.load_circuit(src, limits=LIMITS).count_ops()["h"] == 1
    assert [t.text for t in qasm_scan.tokenize("x; /* a */ // include 'y'")] == ["x", ";"]


# ---------------------------------------------------------------- clean errors
@pytest.mark.parametrize(
    ("body", "where"),
    [
        # The parser stops at the next line's first token; the ';' belongs after "h q[0]".
        ("qreg q[2];\nh q[0]\ncx q[0],q[1];\n", (4, 7)),
        # Past a comment and a blank line, to the end of the code before it.
        ("qreg q[2];\nh q[0]   // hadamard\n\ncx q[0],q[1];\n", (4, 7)),
        ("qreg q[1];\ncreg c[1];\nmeasure q\nh q[0];\n", (5, 10)),  # needed '->'
        ("qreg q[2];\ncx q[0],q[1] q[0];\n", (4, 14)),  # mid-line: where the parser says
    ],
)
def test_a_missing_token_is_placed_at_the_end_of_its_line(body: str, where: tuple) -> None:
    with pytest.raises(CircuitError) as err:
        codec.load_circuit(H2 + body, limits=LIMITS)
    assert (err.value.line, err.value.column) == where, str(err.value)


def test_qasm2_error_is_one_clean_line_with_position() -> None:
    with pytest.raises(CircuitError) as err:
        codec.load_circuit(H2 + "qreg q[2];\n  hh q[0];\n", limits=LIMITS)
    e = err.value
    assert (e.line, e.column) == (4, 3)
    msg = str(e)
    assert "<input>" not in msg and "\n" not in msg and "\x1b" not in msg and "'hh'" in msg
    long_name = "z" * 2000
    with pytest.raises(CircuitError) as err:
        codec.load_circuit(H2 + f"qreg q[1];\n{long_name} q[0];\n", limits=LIMITS)
    assert len(str(err.value)) <= 330


class _FakePanic(BaseException):
    """Stands in for pyo3_runtime.PanicException, which also derives from BaseException."""


def test_base_exceptions_from_parsers_become_circuit_errors() -> None:
    def panics() -> None:
        raise _FakePanic("\x1b[31mthread panicked at 'oops'\x1b[0m\nstack backtrace:\n 0: x")

    with pytest.raises(CircuitError) as err:
        codec._call_parser("invalid OpenQASM 2", panics)
    assert str(err.value) == "invalid OpenQASM 2: thread panicked at 'oops'"

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        codec._call_parser("x", interrupted)


# ---------------------------------------------------------------- refused inputs
@pytest.mark.parametrize(
    "src",
    ["", "   \n", "// only a comment\n", "OPENQASM 2.0;\n", H2, H3 + "/* nothing */\n"],
)
def test_empty_programs_refused(src: str) -> None:
    with pytest.raises(CircuitError):
        codec.load_circuit(src, limits=LIMITS)


@pytest.mark.parametrize(
    "src",
    [
        "UUlTS0lU!!!not base64",
        "UUlTS0lU" + base64.b64encode(b"\x00" * 64).decode(),
        base64.b64encode(b"garbage that is not qpy at all").decode(),
        base64.b64encode(b"QISKIT\x12" + b"\xff" * 40).decode(),
    ],
)
def test_bad_qpy_refused(src: str) -> None:
    with pytest.raises(CircuitError):
        codec.load_circuit(src, "qpy", limits=LIMITS)


@pytest.mark.parametrize("qasm3_syntax", [False, True])
def test_exponential_gate_tower_refused_quickly(qasm3_syntax: bool) -> None:
    src = _tower(40, qasm3_syntax)
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as err:
        codec.load_circuit(src, limits=LIMITS)
    assert time.monotonic() - start < 2.0
    assert err.value.limit == "instructions" and err.value.detail["value"] == 2**40
    # Just under the limit it loads, and the count is exact.
    small = _tower(10, qasm3_syntax)
    assert codec.inspect_circuit(small, limits=LIMITS).num_instructions == 2**10


# ---------------------------------------------------------------- limits
def test_payload_checked_first() -> None:
    limits = Limits(max_payload_bytes=100)
    with pytest.raises(PayloadTooLarge) as err:
        codec.load_circuit("é" * 60, limits=limits)  # 120 bytes of garbage
    assert err.value.limit == "payload_bytes" and err.value.detail["value"] == 120


def test_qubit_limit_all_formats() -> None:
    limits = Limits(max_qubits=4)
    qc = QuantumCircuit(5)
    qc.h(0)
    sources = [
        H2 + "qreg a[3];\nqreg b[2];\nh a[0];\n",
        H3 + "qubit[5] q;\nh q[0];\n",
        H3 + "const uint n = 1000000000;\nqubit[n] q;\nh q[0];\n",
        codec.encode_circuit(qc)[0],
    ]
    for src in sources:
        with pytest.raises(LimitExceeded) as err:
            codec.load_circuit(src, limits=limits)
        assert err.value.limit == "qubits"


def test_instruction_limit_counts_broadcast() -> None:
    limits = Limits(max_instructions=10)
    ok = H2 + "qreg q[5];\nh q;\nx q;\n"
    assert codec.inspect_circuit(ok, limits=limits).num_instructions == 10
    with pytest.raises(LimitExceeded) as err:
        codec.load_circuit(ok + "z q[0];\n", limits=limits)
    assert err.value.limit == "instructions"


def test_qpy_header_with_huge_qubit_count_refused_before_loading() -> None:
    qc = QuantumCircuit(3, 2)
    qc.h(0)
    raw = bytearray(_qpy_b64(qc))
    # version >= 16: type key at 19, offset table at 20, circuit header at 28 (qubits at +5)
    assert struct.unpack_from("!I", raw, 33)[0] == 3
    struct.pack_into("!I", raw, 33, 300_000_000)
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as err:
        codec.load_circuit(base64.b64encode(bytes(raw)).decode(), limits=LIMITS)
    assert err.value.limit == "qubits" and time.monotonic() - start < 1.0
    old = bytearray(_qpy_b64(qc))
    old[6] = 12
    with pytest.raises(CircuitError, match="too old"):
        codec.load_circuit(base64.b64encode(bytes(old)).decode(), limits=LIMITS)


# ---------------------------------------------------------------- QPY round trip, helpers
def test_encode_load_round_trip_with_parameters() -> None:
    theta, vec = Parameter("θ"), ParameterVector("v", 3)
    qc = QuantumCircuit(3, 3, name="param")
    qc.rx(theta, 0)
    qc.ry(2 * vec[0] + theta, 1)
    qc.rzz(vec[1] * vec[2], 1, 2)
    sub = QuantumCircuit(2, name="block")
    sub.cx(0, 1)
    sub.rz(vec[2], 1)
    qc.append(sub.to_gate(), [0, 2])
    qc.measure(range(3), range(3))
    text, fmt = codec.encode_circuit(qc)
    assert fmt == "qpy" and codec.detect_format(text) == "qpy"
    loaded = codec.load_circuit(text, limits=LIMITS)
    assert loaded == qc
    info = codec.inspect_circuit(text, limits=LIMITS)
    assert info.parameters == sorted(p.name for p in qc.parameters)
    assert info.num_instructions == len(qc.data) + 1  # the block expands to two


def test_detect_format() -> None:
    assert codec.detect_format("  OPENQASM 3.0;\nqubit q;") == "qasm3"
    assert codec.detect_format("// c\nOPENQASM 2.0;\nqreg q[1];") == "qasm2"
    assert codec.detect_format("qreg q[1];\nh q[0];") == "qasm2"
    assert codec.detect_format("qubit[2] q;\nh q[0];") == "qasm3"
    assert codec.detect_format(base64.b64encode(b"QISKIT\x12rest").decode()) == "qpy"


def test_to_qasm3_round_trip_and_error() -> None:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    text = codec.to_qasm3(qc)
    back = codec.load_circuit(text, limits=LIMITS)
    assert Counter(back.count_ops()) == Counter(qc.count_ops())
    assert qasm3.loads(text).num_qubits == 2
    with pytest.raises(CircuitError):
        codec.to_qasm3(42)  # type: ignore[arg-type]


def test_the_warm_up_program_passes_the_server_checks() -> None:
    # The server parses it at start-up; a program its own checks refuse would stop the start.
    codec.warm_up()
    info = codec.inspect_circuit(codec._WARM_UP_QASM3, limits=Limits())
    assert (info.format, info.num_qubits, info.num_clbits) == ("qasm3", 2, 2)


def test_a_qasm3_program_parsed_by_the_codec_is_not_parsed_again_by_the_next_reader() -> None:
    """A program only the ANTLR path reads (here: reset) is parsed once: the worker's QIR
    profile walk reads the tree load_circuit has just made."""
    program = H3 + "qubit[2] q;\nreset q[0];\nh q[0];\ncx q[0], q[1];\n"
    circuit = codec.load_circuit(program, "qasm3", limits=LIMITS)
    tree = codec.qasm3_tree(program)
    assert codec.qasm3_tree(program) is tree
    assert [i.operation.name for i in circuit.data] == ["reset", "h", "cx"]
    other = program + "x q[1];\n"
    assert codec.qasm3_tree(other) is not tree
    assert len(codec.qasm3_tree(other).statements) == len(tree.statements) + 1


# ---- the Rust OpenQASM 3 parser and the ANTLR fallback -------------------------------
RUST_TAKES = [
    "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n",
    "qubit[2] a;\nqubit[3] b;\nbit[2] c;\nbit[3] d;\ncx a[0], b[2];\n"
    "d = measure b;\nc = measure a;\n",
    "qubit q;\nbit b;\nh q;\nb = measure q;\n",
    "qubit[3] q;\nbit[3] c;\nccx q[0], q[1], q[2];\ncswap q[0], q[1], q[2];\n"
    "crx(0.3) q[0], q[1];\nc[2] = measure q[0];\nc[0] = measure q[2];\n",
    "qubit[2] q;\nbit[2] c;\nrx(1.5) q[0];\nry(-0.5) q[1];\ncp(0.1) q[0], q[1];\n"
    "barrier q;\nc = measure q;\n",
]
ANTLR_ONLY = [
    "input float[64] theta;\nqubit[1] q;\nrx(theta) q[0];\n",  # input
    "qubit[1] q;\nrx(pi/2) q[0];\n",  # an expression of pi
    "qubit[2] q;\nbit[2] c;\nreset q[0];\nmeasure q -> c;\n",  # reset, measure ->
    "gate my a, b { h a; cx a, b; }\nqubit[2] q;\nmy q[0], q[1];\n",  # a gate definition
    "qubit[2] q;\nbit[1] c;\nc[0] = measure q[0];\nif (c[0]) { x q[1]; }\n",  # if
    "qubit[2] q;\nctrl @ x q[0], q[1];\n",  # a gate modifier
]


@pytest.mark.parametrize("body", RUST_TAKES)
def test_a_program_the_rust_parser_takes_gives_the_antlr_circuit(body: str) -> None:
    from qtaskdist_jupyter.core.circuits import qasm3_fast

    assert qasm3_fast.loads(H3 + body) is not None
    assert codec.load_circuit(H3 + body, limits=LIMITS) == qasm3.loads(H3 + body)


@pytest.mark.parametrize("body", ANTLR_ONLY)
def test_a_valid_program_the_rust_parser_refuses_goes_to_antlr_silently(
    body: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from qtaskdist_jupyter.core.circuits import qasm3_fast

    assert qasm3_fast.loads(H3 + body) is None
    got = codec.load_circuit(H3 + body, limits=LIMITS)
    assert qasm3.dumps(got) == qasm3.dumps(qasm3.loads(H3 + body))  # (fresh Parameter ids)
    assert capfd.readouterr().out == ""  # Rust's printed parse errors went nowhere


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("qubit[2] q;\nh q[5;\n", 4),  # both refuse: ANTLR's error, with its line
        ("qubit[2] q;\ncx q[0], q[0];\n", None),  # Rust would take it; ANTLR refuses
    ],
)
def test_a_program_antlr_refuses_is_refused_cleanly(
    body: str, line: int | None, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CircuitError) as info:
        codec.load_circuit(H3 + body, limits=LIMITS)
    assert str(info.value).startswith("invalid OpenQASM 3: ")
    assert info.value.line == line
    assert capfd.readouterr().out == ""


@pytest.mark.parametrize(
    ("source", "fmt"),
    [
        (H2 + "qreg q[1];\n", "qasm2"),
        (H3 + "qubit q;\n", "qasm3"),
        ("OPENQASM 3", "qasm3"),  # no ";" at all
        ("/* a; b */ OPENQASM 2.0;\nqreg q[1];\n", "qasm2"),  # a ";" in a comment first
        ("// x; " * 100 + "\nOPENQASM 2.0;\nqreg q[1];\n", "qasm2"),  # past 256 characters
        ("qreg q[1];\n", "qasm2"),  # no header: a guess
    ],
)
def test_the_format_comes_from_the_header_tokens(source: str, fmt: str) -> None:
    assert codec.detect_format(source) == fmt
