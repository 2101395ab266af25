"""c_qir_convert end to end: qbraid-qir conversion, re-parsed with pyqir, refusals."""

from __future__ import annotations

import base64

import pyqir

from tests.fixtures.circuits import BELL_QASM2, BELL_QASM3
from tests.fixtures.workers import rows, run_worker, submit

IF_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[1];
creg c[1];
h q[0];
measure q[0] -> c[0];
if (c==1) x q[0];
"""
REUSE = """OPENQASM 3.0;
include "stdgates.inc";
qubit[1] q;
bit[2] c;
c[0] = measure q[0];
x q[0];
c[1] = measure q[0];
"""
SWEEP = """OPENQASM 3.0;
include "stdgates.inc";
input angle theta;
qubit[1] q;
bit[1] c;
rx(theta) q[0];
c = measure q;
"""
IF_REGISTER = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[1];
creg c[2];
h q[0];
measure q[0] -> c[0];
if (c==1) x q[0];
measure q[0] -> c[1];
"""
# The report: a barrier on a qubit subset, then a mid-circuit reset.
BARRIER_RESET = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
h q[0];
cx q[0], q[1];
barrier q[0], q[1];
reset q[2];
c = measure q;
"""


async def test_convert_to_qir_and_refusals(service, settings) -> None:
    ids = await submit(
        service,
        "c_qir_convert",
        [
            {"circuit": BELL_QASM2},
            {"circuit": BELL_QASM3, "profile": "adaptive", "module_name": "bell3"},
            {"circuit": IF_QASM2},
            {"circuit": REUSE, "profile": "base"},
            {"circuit": IF_QASM2, "profile": "adaptive"},
            {
                "circuit": SWEEP,
                "parameter_bindings": [{"theta": 0.0}, {"theta": 3.141592653589793}],
            },
            {"circuit": BARRIER_RESET},
            {"circuit": IF_REGISTER, "profile": "adaptive"},
        ],
    )
    proc = run_worker(settings, "--task-types", "c_qir_convert")
    assert proc.returncode == 0, proc.stderr[-3000:]
    q2, q3, if_row, reuse, if_adaptive, sweep, barrier, wrong = await rows(service, ids)
    for row, profile in ((q2, "base"), (q3, "adaptive")):
        assert row["status"] == "completed", row["error"]
        res = row["result"]
        assert res["profile"] == profile
        assert res["required_num_qubits"] == 2 and res["required_num_results"] == 2
        # The stored bitcode is a valid QIR module with that entry point.
        module = pyqir.Module.from_bitcode(pyqir.Context(), base64.b64decode(res["bitcode_base64"]))
        assert module.verify() is None
        (entry,) = [f for f in module.functions if pyqir.is_entry_point(f)]
        assert entry.name == res["entry_point"]
        assert "__quantum__qis__h__body" in res["llvm_ir"]
    assert '"qir_profiles"="adaptive"' in q3["result"]["llvm_ir"]
    assert '"qir_profiles"="base"' in q2["result"]["llvm_ir"]
    assert if_adaptive["status"] == "completed", if_adaptive["error"]
    assert if_adaptive["result"]["profile"] == "adaptive"
    for row, words in (
        (if_row, "an if/else on a measurement result at line 7"),
        (reuse, "qubit q[0], measured at line 5, used again at line 6"),
    ):
        assert row["status"] == "failed" and row["retry_count"] == 0, row["error"]
        assert words in row["error"] and 'profile: "adaptive"' in row["error"]
        assert "\n" not in row["error"]
        assert row["meta_data"]["error_id"] and "traceback" not in row["meta_data"]
    # Every returned module was executed in qir-runner and matched; the figures are in
    # the result and in the row's metadata.
    for row in (q2, q3, if_adaptive, barrier):
        check = row["result"]["verification"]
        assert check["status"] == "matched" and check["shots"] == 1000, check
        assert 0 <= check["tvd"] <= check["tvd_bound"]
        assert row["meta_data"]["qir_verification"] == check
    assert sweep["status"] == "completed", sweep["error"]
    modules = sweep["result"]["modules"]
    assert [m["parameters"] for m in modules] == [{"theta": 0.0}, {"theta": 3.141592653589793}]
    assert all(m["verification"]["status"] == "matched" for m in modules)
    assert sweep["meta_data"]["qir_verification"]["matched"] == 2
    # qbraid-qir's module for `if (c==1)` on a 2-bit register acts on c == 0b10 instead:
    # the execution check catches it and the task fails, permanently, with no module.
    assert wrong["status"] == "failed" and wrong["retry_count"] == 0 and wrong["result"] is None
    assert "does not compute what the circuit does" in wrong["error"], wrong["error"]
    assert wrong["meta_data"]["qir_verification"]["status"] == "mismatch"
