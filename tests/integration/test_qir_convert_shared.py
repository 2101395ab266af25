"""Repeated conversions are shared, and the outputs stay what the plain path makes
(issue 12, B2 convert).

A job process keeps its recent conversions by payload (``run_many``): a repeat gets the
first one's module and verification record, a refusal is shared too, anything else is
not. Every module equals the step-by-step path's (parse, prepare, export,
``qasm3_to_qir``), written out here.
"""

from __future__ import annotations

import base64

import pyqir
import pytest
from qbraid_qir.qasm3 import qasm3_to_qir
from qtaskdist_worker.jobs import convert as job
from qtaskdist_worker.jobs.common import limits_from, load_circuit
from qtaskdist_worker.jobs.convert import _Recent, convert, prepare, run_many

from .test_qir_corpus import CORPUS

LIMITS = limits_from(None)
BELL3 = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\n'
    "h q[0];\ncx q[0], q[1];\nc = measure q;\n"
)
REUSE = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[2] c;\nh q[0];\n'
    "c[0] = measure q[0];\nx q[0];\nc[1] = measure q[0];\n"
)


def _step_by_step(source: str, profile: str) -> bytes:
    """The plain path, written out here: parse with the codec, prepare, export, convert."""
    circuit = load_circuit(source, "auto", LIMITS)
    return qasm3_to_qir(job._to_qasm3(prepare(circuit)), name="main", profile=profile).bitcode


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("profile", ["base", "adaptive"])
def test_modules_equal_the_step_by_step_path(name: str, profile: str) -> None:
    source, base, adaptive, _ = CORPUS[name]
    if (base if profile == "base" else adaptive) != "ok":
        return  # refusals: test_qir_corpus checks their messages
    result, _ = convert({"circuit": source, "profile": profile, "verify": "static"}, LIMITS)
    want = _step_by_step(source, profile)
    assert base64.b64decode(result["bitcode_base64"]) == want
    assert result["llvm_ir"] == str(pyqir.Module.from_bitcode(pyqir.Context(), want))


def test_repeated_payloads_share_one_conversion_and_nothing_else() -> None:
    # verify "auto" without a seed: each conversion draws one, so a shared one shows.
    executed = {"circuit": BELL3, "module_name": "shared_test"}
    tasks = [
        *({"task_id": f"a{i}", "payload": dict(executed)} for i in range(5)),
        {"task_id": "other", "payload": {"circuit": BELL3, "profile": "adaptive"}},
        *({"task_id": f"r{i}", "payload": {"circuit": REUSE, "profile": "base"}} for i in range(3)),
        {"task_id": "static", "payload": {"circuit": BELL3, "verify": "static"}},
    ]
    replies = run_many({"tasks": tasks})["replies"]
    assert set(replies) == {t["task_id"] for t in tasks}
    first = replies["a0"]
    assert first["ok"] and first["result"]["verification"]["status"] == "matched"
    for i in range(1, 5):
        # The same module, checked once: the repeats name the one seed it ran with.
        assert replies[f"a{i}"]["result"] == first["result"]
        assert replies[f"a{i}"]["meta"]["qir_verification"] == first["meta"]["qir_verification"]
        assert replies[f"a{i}"]["meta"]["simulator_time_s"] >= 0
    alone, meta = convert(executed, LIMITS)
    assert alone["bitcode_base64"] == first["result"]["bitcode_base64"]
    assert alone["verification"]["seed"] != first["result"]["verification"]["seed"]
    assert meta["qir_verification"]["status"] == "matched"
    assert replies["other"]["result"]["profile"] == "adaptive"
    assert replies["other"]["result"]["bitcode_base64"] != first["result"]["bitcode_base64"]
    assert replies["static"]["result"]["verification"]["status"] == "skipped"
    # A refusal is shared too, but each task gets its own report (and error id).
    refusals = [replies[f"r{i}"] for i in range(3)]
    assert all(not r["ok"] and r["error_type"] == "ProfileViolation" for r in refusals)
    assert len({r["error"] for r in refusals}) == 1
    assert len({r["error_id"] for r in refusals}) == 3
    assert "used again at line 7" in refusals[0]["error"]

    # Later requests to the same job process share it too; what a caller does to its
    # reply does not reach the next one.
    first["result"]["llvm_ir"] = "changed"
    again = run_many({"tasks": [{"task_id": "b", "payload": dict(executed)}]})["replies"]["b"]
    assert again["result"]["verification"] == first["meta"]["qir_verification"]
    assert again["result"]["llvm_ir"] == alone["llvm_ir"]


def test_recent_outcomes_stay_within_their_budget_and_keep_only_refusals() -> None:
    result, meta = convert({"circuit": BELL3, "verify": "static"}, LIMITS)
    size = job._result_chars(result)
    recent = _Recent(max_chars=8 * (size + 40), max_entries=3)
    for i in range(5):
        recent.put(f"k{i}", (result, meta))
    assert list(recent.entries) == ["k2", "k3", "k4"]  # the oldest went first
    assert recent.get("k2") is not None
    recent.put("k5", (result, meta))
    assert list(recent.entries) == ["k4", "k2", "k5"]  # k2 was used, so k3 went
    recent.put("crash", RuntimeError("a crash is tried again"))
    recent.put("refusal", job.PermanentJobError("refused"))
    assert recent.get("crash") is None and recent.get("refusal") is not None
    huge = {**result, "llvm_ir": "x" * (recent.max_chars // 8)}
    recent.put("huge", (huge, meta))
    assert recent.get("huge") is None
    assert recent.chars == sum(size for _, size in recent.entries.values())
    # A list of bindings: every module counts.
    assert job._result_chars({"modules": [result, result], "profile": "base"}) == 2 * size
