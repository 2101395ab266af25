"""``c_qir_convert``: OpenQASM / QPY → QIR with qbraid-qir (inside an executor child).

Per module: bind the parameters, drop barriers and delays (scheduling hints with no meaning
in QIR), decompose every gate outside :data:`BASIS`, export as OpenQASM 3 and convert with
``qasm3_to_qir`` under the requested profile. The source is checked against the profile
first (:mod:`.qir_profile`, a refusal names the construct and its line); the module is then
re-parsed from its bitcode, verified by pyqir, walked for profile compliance and, unless
``verify`` says otherwise, executed in qir-runner against the circuit's exact distribution
(:mod:`.qir_verify`). A module that fails any of these is never returned.

A job process keeps its recent outcomes by payload (:class:`_Recent`): batches send one
circuit many times, and each repeat then costs a look-up instead of three parses.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

import pyqir

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import PermanentJobError, QirModuleInvalid
from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.kinds import CONVERT
from qtaskdist_jupyter.core.schemas import ConvertPayload, parse_payload

from . import qir_tree, qir_verify
from .common import error_report, first_line, limits_from, load_circuit
from .outcomes import Converted, ConvertMeta, ConvertReplies, Module, Modules, Summary, Verification
from .protocol import Failure, JobRequest
from .qir_profile import check_module, check_source, may_break_profile

# What qbraid-qir maps one-to-one onto QIR's quantum instruction set; anything else
# (u, p, cp, crx, rzz, cswap, custom gates, ...) is decomposed into it by qiskit first.
BASIS = tuple("id x y z h s sdg t tdg sx sxdg rx ry rz cx cz swap ccx".split())
_KEEP = ("measure", "reset", "if_else", "while_loop", "for_loop", "switch_case", "box")
_DROP = ("barrier", "delay")
_MIN_SHOTS = 100


def convert(payload: JsonObject, limits: Limits) -> tuple[Module | Modules, ConvertMeta]:
    """One task: the result (one module, or ``{"modules": [...]}`` for a list of bindings)
    and the metadata to merge into the task row."""
    p = parse_payload(CONVERT.name, payload)
    assert isinstance(p, ConvertPayload)
    from qtaskdist_jupyter.core.circuits.codec import detect_format

    circuit = load_circuit(p.circuit, p.circuit_format, limits)  # limits, includes, syntax
    if may_break_profile(circuit):
        # Only then the source walk, for a refusal that names the construct and its line.
        fmt = detect_format(p.circuit) if p.circuit_format == "auto" else p.circuit_format
        if fmt == "qpy":
            where = "line {} of the circuit's OpenQASM 3 export"
            check_source(_to_qasm3(circuit), p.profile, where)
        else:
            check_source(p.circuit, p.profile)
    bindings = p.parameter_bindings
    if bindings is None and circuit.parameters:
        names = ", ".join(sorted(x.name for x in circuit.parameters))
        raise PermanentJobError(
            f"the circuit has unbound parameters ({names}); pass parameter_bindings"
        )
    several = isinstance(bindings, list)
    todo = bindings if isinstance(bindings, list) else [bindings]
    modules = []
    for i, binding in enumerate(todo):
        where = f" (parameter_bindings[{i}])" if several else ""
        modules.append(convert_one(circuit, binding, p, limits, where=where))
    checks = [m["verification"] for m in modules]
    if not several:
        return modules[0], {"qir_verification": checks[0]}
    summary: Summary = {
        "modules": len(modules),
        "matched": sum(c["status"] == "matched" for c in checks),
        "skipped": sum(c["status"] == "skipped" for c in checks),
        "max_tvd": max((c["tvd"] for c in checks if "tvd" in c), default=None),
    }
    return {"modules": modules, "profile": p.profile}, {"qir_verification": summary}


def convert_one(
    circuit: Any,
    binding: dict[str, float] | None,
    p: ConvertPayload,
    limits: Limits,
    *,
    where: str = "",
) -> Module:
    bound = _bind(circuit, binding) if binding is not None else circuit
    prepared = prepare(bound)
    try:
        module = _to_module(prepared, p)
    except Exception as exc:  # noqa: BLE001 - the converter's own refusal, kept verbatim
        raise PermanentJobError(f"QIR conversion refused{where}: {first_line(exc)}") from exc
    bitcode = module.bitcode
    # Re-parse what we are about to store: a module that does not survive a round trip
    # through bitcode is a converter bug the user should hear about now, not downstream.
    reparsed = pyqir.Module.from_bitcode(pyqir.Context(), bitcode)
    problem = reparsed.verify()
    if problem is not None:
        raise QirModuleInvalid(f"the QIR module does not verify{where}: {problem.splitlines()[0]}")
    entries = [f for f in reparsed.functions if pyqir.is_entry_point(f)]
    if len(entries) != 1:
        raise QirModuleInvalid(f"the QIR module has {len(entries)} entry points, expected 1")
    entry = entries[0]
    check_module(reparsed, entry, p.profile)
    n_qubits = pyqir.required_num_qubits(entry) or 0
    verification = verify((bound, prepared), bitcode, entry, n_qubits, p, limits, where=where)
    result: Module = {
        "llvm_ir": str(reparsed),
        "bitcode_base64": base64.b64encode(bitcode).decode("ascii"),
        "required_num_qubits": n_qubits,
        "required_num_results": pyqir.required_num_results(entry),
        "profile": p.profile,
        "entry_point": entry.name,
        "module_name": p.module_name,
        "verification": verification,
    }
    if binding is not None:
        result["parameters"] = dict(binding)
    return result


def verify(
    source: tuple[Any, str],
    bitcode: bytes,
    entry: Any,
    n_qubits: int,
    p: ConvertPayload,
    limits: Limits,
    *,
    where: str = "",
) -> Verification:
    """Execute the module in qir-runner and compare (or say why not); raise on a mismatch.
    ``source``: the bound circuit and the prepared one, which the reference comes from
    (read back from its OpenQASM 3 export where its registers don't lay out its clbits)."""
    auto = p.verify == "auto"
    if p.verify == "static":
        return _skipped('verify: "static" was asked (pyqir and profile checks only)')
    bound, prepared = source
    reference = bound if _register_ordered(bound) else _reload(_to_qasm3(prepared))
    if auto and n_qubits > limits.qir_verify_max_qubits:
        return _skipped(
            f"{n_qubits} qubits is over the execution check's limit of "
            f"{limits.qir_verify_max_qubits} (QTASKDIST_QIR_VERIFY_MAX_QUBITS)"
        )
    started = time.perf_counter()
    try:
        exact = qir_verify.exact_distribution(reference)
        order = qir_verify.record_order(entry)
    except (qir_verify.ReferenceUnavailable, qir_verify.OutputUnreadable) as exc:
        if auto:
            return _skipped(str(exc))
        raise PermanentJobError(f"cannot execution-check the module{where}: {exc}") from exc
    shots = p.verify_shots or limits.qir_verify_shots
    seed = p.verify_seed if p.verify_seed is not None else secrets.randbits(63)
    counts, skip = _execute(bitcode, entry.name, order, shots, seed, limits, auto=auto, where=where)
    if skip is not None:
        return _skipped(skip)
    figures = qir_verify.compare(exact, counts, sum(counts.values()))
    problem = figures.pop("problem")
    time_s = round(time.perf_counter() - started, 4)
    if problem is not None:
        exc = QirModuleInvalid(
            f"the QIR module does not compute what the circuit does{where}: {problem} "
            f"(qir-runner, seed {seed}); a converter bug, so no module is returned"
        )
        mismatch: Verification = {"status": "mismatch", **figures, "seed": seed, "time_s": time_s}
        exc.meta = {"qir_verification": mismatch}
        raise exc
    return {"status": "matched", "method": "qir-runner", **figures, "seed": seed, "time_s": time_s}


def _execute(
    bitcode: bytes,
    entry_name: str,
    order: list[int],
    shots: int,
    seed: int,
    limits: Limits,
    *,
    auto: bool,
    where: str,
) -> tuple[dict[int, int], str | None]:
    """The module's counts in qir-runner, and why the check is skipped instead (None: it
    is not): "auto" skips it when even a few shots would overrun the time budget."""
    counts: dict[int, int] = {}
    try:
        # A first slice times one shot, so "auto" can fit the rest into the time budget.
        first = min(shots, 10)
        t0 = time.perf_counter()
        _merge(counts, qir_verify.run_shots(bitcode, entry_name, first, seed, order))
        per_shot_s = (time.perf_counter() - t0) / first
        rest = shots - first
        if auto and per_shot_s * rest > limits.qir_verify_time_s:
            rest = int(limits.qir_verify_time_s / per_shot_s)
            if first + rest < min(_MIN_SHOTS, shots):
                return counts, (
                    f"{_MIN_SHOTS} shots in qir-runner would take about "
                    f"{per_shot_s * _MIN_SHOTS:.0f} s, over the {limits.qir_verify_time_s:g} s "
                    "budget (QTASKDIST_QIR_VERIFY_TIME_S)"
                )
        if rest > 0:
            _merge(counts, qir_verify.run_shots(bitcode, entry_name, rest, seed + 1, order))
    except qir_verify.OutputUnreadable as exc:
        raise QirModuleInvalid(f"qir-runner could not run the module{where}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - qir-runner's own failure, one line
        raise QirModuleInvalid(
            f"qir-runner could not run the module{where}: {first_line(exc)}"
        ) from exc
    return counts, None


def _skipped(reason: str) -> Verification:
    return {"status": "skipped", "reason": reason}


def _merge(total: dict[int, int], part: dict[int, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def _bind(circuit: Any, binding: dict[str, float]) -> Any:
    by_name = {param.name: param for param in circuit.parameters}
    missing = sorted(set(by_name) - set(binding))
    extra = sorted(set(binding) - set(by_name))
    if missing or extra:
        detail = f"missing {missing}" if missing else f"the circuit has no {extra}"
        raise PermanentJobError(
            f"parameter binding {binding} does not match the circuit's parameters "
            f"{sorted(by_name)} ({detail})"
        )
    return circuit.assign_parameters({by_name[k]: v for k, v in binding.items()})


def prepare(circuit: Any) -> Any:
    """Barriers and delays out, every gate outside BASIS decomposed (control flow kept)."""
    stripped = _strip(circuit)
    if not _needs_decomposition(stripped):
        return stripped
    from qiskit import transpile

    return transpile(stripped, basis_gates=[*BASIS, *_KEEP], optimization_level=0)


def _strip(circuit: Any) -> Any:
    out = circuit.copy_empty_like()
    for inst in circuit.data:
        op = inst.operation
        if op.name in _DROP:
            continue
        if getattr(op, "blocks", None):
            op = op.replace_blocks([_strip(b) for b in op.blocks])
        out.append(op, inst.qubits, inst.clbits)
    return out


def _needs_decomposition(circuit: Any) -> bool:
    for inst in circuit.data:
        op = inst.operation
        if getattr(op, "blocks", None):
            if any(_needs_decomposition(b) for b in op.blocks):
                return True
        elif op.name not in BASIS and op.name not in _KEEP:
            return True
    return False


def _register_ordered(circuit: Any) -> bool:
    """Do the classical registers, in order, lay out exactly the circuit's clbits? Then
    qbraid-qir's result ids (declaration order) are the clbit indices."""
    laid = [bit for reg in circuit.cregs for bit in reg]
    return laid == list(circuit.clbits)


def _reload(program: str) -> Any:
    """The export read back as the codec reads OpenQASM 3 (the Rust parser where it can)."""
    from qtaskdist_jupyter.core.circuits.codec import load_circuit as codec_load

    return codec_load(program, "qasm3", limits=Limits())


def _to_module(prepared: Any, p: ConvertPayload) -> Any:
    """The QIR module of the prepared circuit: from its OpenQASM 3 tree, built directly
    where its shape allows (qir_tree: no text, no second parse), else from its export."""
    tree = qir_tree.program_tree(prepared)
    if tree is not None:
        return qir_tree.to_qir(tree, p.module_name, p.profile)
    from qbraid_qir.qasm3 import qasm3_to_qir

    return qasm3_to_qir(_to_qasm3(prepared), name=p.module_name, profile=p.profile)


def _to_qasm3(circuit: Any) -> str:
    from qtaskdist_jupyter.core.circuits.codec import to_qasm3

    return to_qasm3(circuit)


def warm_up() -> None:
    """Import the converter and run one tiny conversion (see jobs.warm_up)."""
    program = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nh q[0];\n'
    convert({"circuit": program + "c[0] = measure q[0];\n"}, limits_from(None))


def run_many(request: JobRequest) -> ConvertReplies:
    limits = limits_from(request.get("limits"))
    limits_key = json.dumps(asdict(limits), sort_keys=True)
    replies: dict[str, Converted | Failure] = {}
    for task in request["tasks"]:
        started = time.perf_counter()
        key = _payload_key(task["payload"], limits_key)
        outcome = _DONE.get(key) if key is not None else None
        if outcome is None:
            try:
                outcome = convert(task["payload"], limits)
            except Exception as exc:  # noqa: BLE001 - reported per task
                outcome = exc
            if key is not None:
                _DONE.put(key, outcome)
        if isinstance(outcome, BaseException):
            report = error_report(outcome)
            if extra := getattr(outcome, "meta", None):
                report["meta"] = extra
            replies[task["task_id"]] = report
            continue
        result, meta = copy.deepcopy(outcome)  # the kept one stays as it was made
        meta: ConvertMeta = {**meta, "simulator_time_s": time.perf_counter() - started}
        replies[task["task_id"]] = {"ok": True, "result": result, "meta": meta}
    return {"replies": replies}


Outcome = tuple[Module | Modules, ConvertMeta] | BaseException


class _Recent:
    """The outcomes of the job process's recent conversions, by payload, least recently
    used out first, within a character budget.

    Batches send one circuit many times, and conversion is deterministic in the payload
    and the limits: a repeat gets the module of the first conversion, and its
    verification record (that very module was executed and compared, with the seed the
    record names; without ``verify_seed`` the repeats therefore name one seed). Refusals
    (PermanentJobError: profile, converter, mismatch) are kept too; anything else (a
    crash, a retryable error) is not, so it is tried again.
    """

    def __init__(self, max_chars: int, max_entries: int) -> None:
        self.max_chars, self.max_entries = max_chars, max_entries
        self.entries: OrderedDict[str, tuple[Outcome, int]] = OrderedDict()
        self.chars = 0

    def get(self, key: str) -> Outcome | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        self.entries.move_to_end(key)
        return hit[0]

    def put(self, key: str, outcome: Outcome) -> None:
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, PermanentJobError):
                return
            size = len(key) + len(str(outcome))
        else:
            size = len(key) + _result_chars(outcome[0])
        if size > self.max_chars // 8:
            return  # one huge module must not push out everything else
        old = self.entries.pop(key, None)
        if old is not None:
            self.chars -= old[1]
        self.entries[key] = (outcome, size)
        self.chars += size
        while self.chars > self.max_chars or len(self.entries) > self.max_entries:
            _, (_, freed) = self.entries.popitem(last=False)
            self.chars -= freed


def _result_chars(result: Module | Modules) -> int:
    modules = result["modules"] if "modules" in result else [result]
    return sum(len(m["llvm_ir"]) + len(m["bitcode_base64"]) + 512 for m in modules)


_DONE = _Recent(max_chars=32 << 20, max_entries=256)


def _payload_key(payload: Any, limits_key: str) -> str | None:
    """Payload (canonical JSON) and limits (None if not JSON: then never shared)."""
    try:
        return json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\0" + limits_key
    except (TypeError, ValueError):
        return None
