"""``c_qir_convert``: OpenQASM / QPY → QIR with qbraid-qir (inside an executor child).

Every input goes through ``qasm3_to_qir`` with the requested profile (base | adaptive):
QASM 3 text as sent, QASM 2 and QPY after loading and dumping as QASM 3. (``qiskit_to_qir``
has no profile option and marks its modules ``qir_profiles="custom"``.) Refusals, such as
a measured qubit reused or an ``if`` under the base profile, fail permanently with the
converter's message.
Every module is re-parsed from its bitcode with pyqir and verified before it is stored.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pyqir

from qtaskdist_jupyter.errors import PermanentJobError
from qtaskdist_jupyter.schemas import ConvertPayload, parse_payload

from .common import error_report, first_line, limits_from, load_circuit


def _is_qasm3(source: str, fmt: str) -> bool:
    if fmt != "auto":
        return fmt == "qasm3"
    for line in source.lstrip().splitlines()[:5]:
        line = line.strip()
        if line.startswith("OPENQASM"):
            return line.split()[1].rstrip(";").startswith("3")
    return False


def _to_qasm3(circuit: Any) -> str:
    try:
        from qtaskdist_jupyter.codec import to_qasm3
    except ImportError:  # pragma: no cover - only until the shared codec is installed
        from qiskit.qasm3 import dumps as to_qasm3
    return to_qasm3(circuit)


def convert(payload: dict[str, Any], limits: Any) -> dict[str, Any]:
    p = parse_payload("c_qir_convert", payload)
    assert isinstance(p, ConvertPayload)
    circuit = load_circuit(p.circuit, p.circuit_format, limits)  # limits, includes, syntax
    from qbraid_qir.qasm3 import qasm3_to_qir

    if _is_qasm3(p.circuit, p.circuit_format):
        program = p.circuit
    else:
        program = _to_qasm3(circuit)
    try:
        module = qasm3_to_qir(program, name=p.module_name, profile=p.profile)
    except Exception as exc:  # noqa: BLE001 - the converter's own refusal, kept verbatim
        raise PermanentJobError(f"QIR conversion refused: {first_line(exc)}") from exc
    bitcode = module.bitcode
    # Re-parse what we are about to store: a module that does not survive a round trip
    # through bitcode is a converter bug the user should hear about now, not downstream.
    reparsed = pyqir.Module.from_bitcode(pyqir.Context(), bitcode)
    problem = reparsed.verify()
    if problem is not None:
        raise PermanentJobError(f"the QIR module does not verify: {first_line(Exception(problem))}")
    entries = [f for f in reparsed.functions if pyqir.is_entry_point(f)]
    if len(entries) != 1:
        raise PermanentJobError(f"the QIR module has {len(entries)} entry points, expected 1")
    entry = entries[0]
    return {
        "llvm_ir": str(reparsed),
        "bitcode_base64": base64.b64encode(bitcode).decode("ascii"),
        "required_num_qubits": pyqir.required_num_qubits(entry),
        "required_num_results": pyqir.required_num_results(entry),
        "profile": _profile_of(entry) or p.profile,
        "entry_point": entry.name,
        "module_name": p.module_name,
    }


def _profile_of(entry: Any) -> str | None:
    try:
        return entry.attributes.func["qir_profiles"].string_value
    except (KeyError, AttributeError):
        return None


def warm_up() -> None:
    """Import the converter and run one tiny conversion (see jobs.warm_up)."""
    program = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nh q[0];\n'
    convert({"circuit": program + "c[0] = measure q[0];\n"}, limits_from(None))


def run_many(request: dict[str, Any]) -> dict[str, Any]:
    limits = limits_from(request.get("limits"))
    replies: dict[str, Any] = {}
    for task in request["tasks"]:
        started = time.perf_counter()
        try:
            result = convert(task["payload"], limits)
            replies[task["task_id"]] = {
                "ok": True,
                "result": result,
                "meta": {"simulator_time_s": time.perf_counter() - started},
            }
        except Exception as exc:  # noqa: BLE001 - reported per task
            replies[task["task_id"]] = error_report(exc)
    return {"replies": replies}
