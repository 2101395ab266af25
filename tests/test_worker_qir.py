"""c_qir_convert end to end: qbraid-qir conversion, re-parsed with pyqir, refusals."""

from __future__ import annotations

import base64

import pyqir

from .conftest import BELL_QASM2, BELL_QASM3
from .worker_fixtures import rows, run_worker, submit

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
        ],
    )
    proc = run_worker(settings, "--task-types", "c_qir_convert")
    assert proc.returncode == 0, proc.stderr[-3000:]
    q2, q3, if_row, reuse, if_adaptive = await rows(service, ids)
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
    for row, words in ((if_row, "Base Profile"), (reuse, "Base Profile")):
        assert row["status"] == "failed" and row["retry_count"] == 0, row["error"]
        assert words in row["error"] and "\n" not in row["error"]
        assert row["meta_data"]["error_id"] and "traceback" not in row["meta_data"]
