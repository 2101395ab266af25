"""The cheap OpenQASM 2 bound a worker's job process uses instead of the token scan: never
below the scan's counts, None for what it cannot bound, and a worker's own limits still
refuse what is over them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtaskdist_jupyter.core.circuits import codec
from qtaskdist_jupyter.core.circuits.qasm2_bound import bound
from qtaskdist_jupyter.core.circuits.qasm_scan import scan
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import CircuitError, IncludeRefused, LimitExceeded

HEAD = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
PIECES = ["qreg q[3];", "creg c[3];", "qreg r[7];", "creg d[2];", "h q;", "h q[0];",
          "cx q,r;", "cx q[0],r[1];", "measure q -> c;", "measure r[0] -> d[1];",
          "barrier q,r;", "if(c==1) x q;", "rx(0.5) q;", "u3(1,2,3) r;", "reset q;",
          "gate g a { h a; h a; }", "g q;", "qreg s[1_0];", "qreg t [ 4 ] ;", "\n",
          "// qreg z[100];\n", "/* creg y[9]; */", "rx((1)) q[0];", "h q", ";", " ",
          'include "x.inc";', "$3", "{", "}", "qreg\nw[5];", "opaque o a;", "qreg q2[2]",
          "ctrl @"]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=30))
def test_the_bound_is_never_below_the_scan(parts: list[str]) -> None:
    source = HEAD + "".join(parts)
    got = bound(source)
    try:
        exact = scan(source, "qasm2")
    except (CircuitError, LimitExceeded) as exc:
        # The scan refuses: the bound may only pass what the scan refuses for the syntax
        # (a parser refuses it too), never a foreign include.
        assert got is None or not isinstance(exc, IncludeRefused), (source, exc)
        return
    if got is not None:
        assert exact.instructions <= got.instructions, source
        assert exact.qubits <= got.qubits and exact.clbits <= got.clbits, source


@pytest.mark.parametrize(
    "source",
    [
        HEAD + 'include "other.inc";\nqreg q[1];',
        HEAD + '// include "x"\nqreg q[1];',
        HEAD + "gate g a { h a; }\nqreg q[1];\ng q;",
        HEAD + "qreg q[1]; // qreg\n",
        HEAD + "qreg q[0x10];",
        HEAD + "qreg q[1];\nrx(((0.1))) q[0];",
        "OPENQASM 2.0;\nqreg q[1];\nh q[0];\n",  # no include at all: the scan decides
    ],
)
def test_what_it_cannot_bound_goes_to_the_scan(source: str) -> None:
    assert bound(source) is None


def test_a_workers_own_limits_refuse_through_the_quick_path() -> None:
    source = HEAD + "qreg q[3];\ncreg c[3];\nh q;\nmeasure q -> c;\n"
    assert bound(source) is not None
    circuit = codec.load_circuit(source, "qasm2", limits=Limits(), quick=True)
    assert circuit.num_qubits == 3
    with pytest.raises(LimitExceeded, match="3 qubits"):
        codec.load_circuit(source, "qasm2", limits=Limits(max_qubits=2), quick=True)
    with pytest.raises(LimitExceeded, match="instructions"):
        codec.load_circuit(source, "qasm2", limits=Limits(max_instructions=5), quick=True)
    with pytest.raises(IncludeRefused):
        codec.load_circuit(
            source + 'include "/etc/passwd";\n', "qasm2", limits=Limits(), quick=True
        )


def test_a_modifier_with_nothing_after_it_is_counted_not_a_crash() -> None:
    """Found by the property test above: the scan indexed past the statement's end."""
    assert scan(HEAD + "qreg q[1];\nA @;\n", "qasm2").statements == 2
