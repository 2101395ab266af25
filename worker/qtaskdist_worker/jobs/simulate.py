"""``simulate``: run circuits on qiskit-aer's AerSimulator (inside an executor child).

A unit holds one or more tasks whose run options match (units.batch_key). Each task
is one Aer call of its own, with its own seed, so its result equals an in-process
``AerSimulator(method=...).run(circuit, shots=..., seed_simulator=seed)`` bit for bit;
the seed Aer used is stored in ``meta_data.seed_simulator`` so any result can be replayed.

Why not one call for many tasks: Aer gives experiment ``i`` of a call the seed
``seed_simulator + 2113 * i``, so seeded tasks cannot share one; and for unseeded tasks
of one circuit a call each is cheaper than one call of many, because a call of one
circuit runs its kept assembly again while a call of many assembles every circuit
(.aer_call). A sweep is still one call: Aer binds its points itself.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit.result import Counts
from qiskit.result.postprocess import format_level_2_memory
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

from qtaskdist_jupyter.core import arrays, budget, counts
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import PermanentJobError
from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.kinds import SIMULATE
from qtaskdist_jupyter.core.schemas import SimulatePayload, parse_payload

from ..memlimit import as_memory_error
from .aer_call import AerExperiment, AerOptions, AerOutput, run_raw
from .binding import ParamKey, aer_binds, aer_table, bind
from .common import error_report, limits_from, load_circuit
from .outcomes import Part, Simulated, SimulateMeta, SimulateReplies, Sweep
from .protocol import Failure, JobRequest

if TYPE_CHECKING:
    from qtaskdist_jupyter.core.circuits.codec import CircuitFormat

_ALWAYS_OK = {"barrier", "measure", "reset", "delay", "store"}
_NOISE_1Q = ("id x y z h s sdg t tdg sx sxdg rx ry rz p u u1 u2 u3 r").split()
_NOISE_2Q = ("cx cy cz ch swap ecr cp crx cry crz cu rxx ryy rzz rzx iswap csx").split()


@lru_cache(maxsize=16)
def simulator(method: str, device: str) -> AerSimulator:
    devices = AerSimulator().available_devices() or ()
    if device == "GPU" and "GPU" not in devices:
        raise PermanentJobError(
            "device='GPU' needs qiskit-aer-gpu and a CUDA GPU on the worker; this worker's "
            f"Aer offers only {', '.join(devices)}"
        )
    return AerSimulator(method=method, device=device)


@lru_cache(maxsize=1)
def supported_ops() -> frozenset[str]:
    target = AerSimulator().target
    assert target is not None, "AerSimulator always has a target"
    return frozenset(target.operation_names) | _ALWAYS_OK


@lru_cache(maxsize=64)
def noise_model(p1: float, p2: float, readout: float) -> NoiseModel | None:
    if not (p1 or p2 or readout):
        return None
    model = NoiseModel()
    if p1:
        model.add_all_qubit_quantum_error(depolarizing_error(p1, 1), _NOISE_1Q)
    if p2:
        model.add_all_qubit_quantum_error(depolarizing_error(p2, 2), _NOISE_2Q)
    if readout:
        model.add_all_qubit_readout_error(
            ReadoutError([[1 - readout, readout], [readout, 1 - readout]])
        )
    return model


def prepare(circuit: QuantumCircuit, method: str, device: str) -> QuantumCircuit:
    """Transpile (optimization level 0) only when Aer cannot run an instruction as is:
    transpiling at the default level costs more than simulating small circuits."""
    names = circuit.count_ops().keys()  # counted in Rust; no gate object per instruction
    if names <= supported_ops():
        return circuit
    return transpile(circuit, simulator(method, device), optimization_level=0)


def _observable(obs: str | dict[str, float], n: int) -> SparsePauliOp:
    terms = [(obs, 1.0)] if isinstance(obs, str) else list(obs.items())
    for label, _ in terms:
        if len(label) != n:
            raise PermanentJobError(
                f"observable {label!r} has {len(label)} Pauli factors but the circuit has "
                f"{n} qubits (the rightmost factor acts on qubit 0)"
            )
    return SparsePauliOp.from_list(terms)


def _with_saves(circuit: QuantumCircuit, p: SimulatePayload) -> QuantumCircuit:
    """Insert Aer save instructions before the trailing measurements."""
    if not (p.statevector or p.probabilities or p.observables):
        return circuit
    data = circuit.data
    cut = len(data)
    while cut and data[cut - 1].operation.name in ("measure", "barrier"):
        cut -= 1
    out = circuit.copy_empty_like()
    for inst in data[:cut]:
        out.append(inst.operation, inst.qubits, inst.clbits, copy=False)
    qubits = list(range(circuit.num_qubits))
    # qiskit_aer adds the save_* instructions to QuantumCircuit when it is imported.
    if p.statevector:
        out.save_statevector(label="statevector")  # pyright: ignore[reportAttributeAccessIssue]
    if p.probabilities:
        out.save_probabilities(qubits, label="probabilities")  # pyright: ignore[reportAttributeAccessIssue]
    for k, obs in enumerate(p.observables or []):
        observable = _observable(obs, circuit.num_qubits)
        out.save_expectation_value(observable, qubits, label=f"exp{k}")  # pyright: ignore[reportAttributeAccessIssue]
    for inst in data[cut:]:
        out.append(inst.operation, inst.qubits, inst.clbits, copy=False)
    return out


def execute(
    sim: AerSimulator,
    circuits: list[QuantumCircuit],
    options: AerOptions,
    parameter_binds: list[dict[ParamKey, list[float]]] | None = None,
) -> AerOutput:
    """The output of ``sim.run(circuits, parameter_binds, **options).result()`` before qiskit
    wraps it in a ``Result``: no job thread, no Result objects, and a circuit run again
    (the next seed) skips its compile and assembly (see :mod:`.aer_call`)."""
    return run_raw(sim, circuits, options, parameter_binds)


def warm_up() -> None:
    """Import, build the default simulator and run one tiny circuit (executor start)."""
    circuit = QuantumCircuit(1, 1)
    circuit.h(0)
    circuit.measure(0, 0)
    supported_ops()
    simulator("automatic", "CPU").run(circuit, shots=1).result()


@lru_cache(maxsize=32)
def _prepared(
    source: str, fmt: CircuitFormat, limits: Limits, method: str, device: str
) -> QuantumCircuit:
    """Parse (and, if needed, transpile) a circuit once per job process: a sweep sends the
    same text thousands of times, and parsing costs more than simulating a small circuit.
    Safe to share: Aer never mutates the circuits it runs, and saves / bindings copy."""
    return prepare(load_circuit(source, fmt, limits), method, device)


# Experiments are (circuit, parameter_binds) pairs: Aer binds a sweep itself, one result per
# binding, in binding order, with the same seeds as a list of bound circuits would get.
Experiment = tuple[QuantumCircuit, dict[Parameter, list[float]] | None]


def experiments(payload: JsonObject, limits: Limits) -> tuple[SimulatePayload, list[Experiment]]:
    p = parse_payload(SIMULATE.name, payload)
    assert isinstance(p, SimulatePayload)
    simulator(p.method, p.device)  # fails early for an unavailable GPU
    circuit = _prepared(p.circuit, p.circuit_format, limits, p.method, p.device)
    # Before Aer builds the arrays: the worker's limit may be below the server's. The
    # counts are counted as they come (_check_counts): their bound is the server's.
    max_bytes = limits.max_result_bytes
    nq, nc = circuit.num_qubits, circuit.num_clbits
    arrays.check_result_size(payload, nq, nc, max_bytes, counts=False)
    auto = p.method == "automatic"
    ops = _operations(p.circuit, p.circuit_format, limits, p.method, p.device) if auto else ()
    budget.check_task_memory(
        payload, nq, ops, limits.max_task_memory_bytes, mps_max_bond=limits.mps_max_bond_dimension
    )
    if p.parameter_bindings is None and circuit.parameters:
        names = ", ".join(sorted(x.name for x in circuit.parameters))
        raise PermanentJobError(
            f"the circuit has unbound parameters ({names}); pass parameter_bindings"
        )
    if p.parameter_bindings is None:
        return p, [(_saved(circuit, p), None)]
    if not aer_binds_cached(circuit):
        # Bound in Python, as the user's in-process run binds (see .binding).
        return p, [(_with_saves(bind(circuit, b), p), None) for b in p.parameter_bindings]
    return p, [(_saved(circuit, p), aer_table(circuit, p.parameter_bindings))]


# aer_binds per prepared circuit (by identity: _prepared keeps it alive).
_AER_BINDS: dict[int, tuple[QuantumCircuit, bool]] = {}


def aer_binds_cached(circuit: QuantumCircuit) -> bool:
    hit = _AER_BINDS.get(id(circuit))
    if hit is not None and hit[0] is circuit:
        return hit[1]
    if len(_AER_BINDS) >= _SAVED_MAX:
        _AER_BINDS.pop(next(iter(_AER_BINDS)))
    decided = aer_binds(circuit)
    _AER_BINDS[id(circuit)] = (circuit, decided)
    return decided


# Circuits with their saves, per prepared circuit (by identity: _prepared keeps it alive)
# and save options: a batch of observable tasks builds the same circuit once.
_SAVED: dict[tuple[int, str], tuple[QuantumCircuit, QuantumCircuit]] = {}
_SAVED_MAX = 64


def _saved(circuit: QuantumCircuit, p: SimulatePayload) -> QuantumCircuit:
    if not (p.statevector or p.probabilities or p.observables):
        return circuit
    key = (id(circuit), json.dumps([p.statevector, p.probabilities, p.observables], sort_keys=True))
    hit = _SAVED.get(key)
    if hit is not None and hit[0] is circuit:
        return hit[1]
    out = _with_saves(circuit, p)
    if len(_SAVED) >= _SAVED_MAX:
        _SAVED.pop(next(iter(_SAVED)))
    _SAVED[key] = (circuit, out)
    return out


def _counts(exp: AerExperiment) -> dict[str, int]:
    """``Result.get_counts(i)`` as a plain dict, with a fast path for one classical
    register: Aer's hex keys padded to binary, which is all qiskit's formatting does
    then (and a sweep of a thousand points spends more in that formatting than in Aer).
    """
    raw = exp.get("data", {})["counts"]
    header = exp.get("header") or {}
    cregs = header.get("creg_sizes")
    slots = header.get("memory_slots")
    if cregs and len(cregs) == 1 and cregs[0][1] == slots:
        return {format(int(k, 16), f"0{slots}b"): int(v) for k, v in raw.items()}
    shape = {k: header[k] for k in ("creg_sizes", "memory_slots") if k in header}
    return dict(Counts(raw, **shape))


def _one(
    exp: AerExperiment, p: SimulatePayload, n_qubits: int, spool_dir: str | None
) -> tuple[dict[str, int], Part]:
    """One experiment's counts, and its result from Aer's output; arrays over
    arrays.INLINE_JSON_MAX_BYTES go to a file in ``spool_dir`` as compressed .npy, and the
    reply carries their description."""
    if not exp.get("success"):
        raise PermanentJobError(f"Aer could not run the circuit: {exp.get('status')}")
    data = exp.get("data") or {}
    # Without measurements there are no counts: qiskit's get_counts would derive 2^n
    # "counts" from a saved statevector, the very array that must stay out of the row.
    measured = _counts(exp) if "counts" in data else {}
    out: Part = {"counts": measured}
    if p.memory:
        memory = data.get("memory")
        header = exp.get("header") or {}
        out["memory"] = arrays.memory_part(
            format_level_2_memory(memory, header) if memory is not None else [], spool_dir
        )
    if p.statevector:
        sv = np.asarray(data["statevector"], dtype=complex)
        out["statevector"] = arrays.statevector_part(sv, n_qubits, spool_dir)
    if p.probabilities:
        probs = np.asarray(data["probabilities"], dtype=float)
        out["probabilities"] = arrays.probabilities_part(probs, n_qubits, spool_dir)
    if p.observables:
        out["expectation_values"] = [float(data[f"exp{k}"]) for k in range(len(p.observables))]
    return measured, out


def _check_counts(
    maps: list[dict[str, int]], p: SimulatePayload, circuit: QuantumCircuit, max_bytes: int
) -> None:
    """The counts a run produced, with its arrays, against QTASKDIST_MAX_RESULT_BYTES."""
    fields = ("statevector", "probabilities", "memory", "shots", "parameter_bindings")
    payload = {name: getattr(p, name) for name in fields}
    sizes = arrays.result_bytes(payload, circuit.num_qubits, circuit.num_clbits)
    other = sum(v for k, v in sizes.items() if k != "counts")
    counts.check_counts_size(maps, other, max_bytes)


def _size(exp: Experiment) -> int:
    """How many results an experiment gives: one per binding, or one."""
    binds = exp[1]
    return len(next(iter(binds.values()))) if binds else 1


def run_group(request: JobRequest) -> SimulateReplies:
    """Run the unit's tasks (equal run options, see units.batch_key), each in an Aer call
    of its own, one after another; reply {task_id: outcome}. A task's result equals
    ``AerSimulator(method=…).run(circuit, …)`` run alone in-process with its seed, bit for
    bit (tests/integration/test_aer_call.py)."""
    limits = limits_from(request.get("limits"))
    replies: dict[str, Simulated | Failure] = {}
    for task in request["tasks"]:
        tid = task["task_id"]
        try:
            p, exps = experiments(task["payload"], limits)
        except Exception as exc:  # noqa: BLE001 - reported per task
            replies[tid] = error_report(as_memory_error(exc))
            continue
        replies[tid] = _run_one(p, exps, request, limits)
    return {"replies": replies}


@lru_cache(maxsize=32)
def _operations(
    source: str, fmt: CircuitFormat, limits: Limits, method: str, device: str
) -> frozenset[str]:
    """The prepared circuit's operation names (what Aer's automatic method looks at)."""
    from qtaskdist_jupyter.core.circuits.codec import operation_names

    return operation_names(_prepared(source, fmt, limits, method, device))


def _run_one(
    p: SimulatePayload, exps: list[Experiment], request: JobRequest, limits: Limits
) -> Simulated | Failure:
    """One task's Aer call and its outcome."""
    nm = noise_model(
        *(
            (p.noise.depolarizing_1q, p.noise.depolarizing_2q, p.noise.readout)
            if p.noise
            else (0.0, 0.0, 0.0)
        )
    )
    options: AerOptions = {"shots": p.shots, "memory": p.memory}
    options["max_parallel_threads"] = int(request.get("threads") or 1)
    # Aer refuses a state over the task's budget before allocating it.
    options["max_memory_mb"] = budget.aer_max_memory_mb(limits.max_task_memory_bytes)
    if p.method == "matrix_product_state":  # the cap that bounds its memory (core/budget.py)
        options["matrix_product_state_max_bond_dimension"] = limits.mps_max_bond_dimension
    if p.seed is not None:
        options["seed_simulator"] = p.seed
    if nm is not None:
        options["noise_model"] = nm
    binds = [b or {} for _c, b in exps] if any(b for _c, b in exps) else None
    n = sum(_size(e) for e in exps)
    if request.get("lent_threads") and n > 1:
        # Threads lent by idle job processes (Dispatcher._lent_threads): the bindings are
        # independent experiments, run side by side. Each keeps its seed (seed_simulator
        # + 2113 * i), so the results are those of a serial call, bit for bit.
        options["max_parallel_experiments"] = options["max_parallel_threads"]
    started = time.perf_counter()
    try:
        output = execute(simulator(p.method, p.device), [c for c, _b in exps], options, binds)
        results = output["results"]
        if len(results) != n:
            raise PermanentJobError(f"Aer could not run the circuit: {output.get('status')}")
    except Exception as exc:  # noqa: BLE001
        return error_report(as_memory_error(exc), prefix="Aer: ")
    wall = time.perf_counter() - started
    try:
        spool = request.get("spool_dir")
        qubits = [c.num_qubits for c, _b in exps for _k in range(_size((c, _b)))]
        measured = [_one(results[k], p, qubits[k], spool) for k in range(n)]
        _check_counts([m for m, _part in measured], p, exps[0][0], limits.max_result_bytes)
        for m, part in measured:  # a large counts map leaves the row, like an array
            part["counts"] = counts.counts_part(m, spool)
        parts = [part for _m, part in measured]
        seeds = [int(r["seed_simulator"]) for r in results]
    except Exception as exc:  # noqa: BLE001
        return error_report(as_memory_error(exc))
    body = _body(p, parts)
    meta: SimulateMeta = {
        "simulator_time_s": wall,
        "seed_simulator": seeds[0] if len(seeds) == 1 else seeds,
        "method": (results[0].get("metadata") or {}).get("method"),
        "aer_threads": options["max_parallel_threads"],
    }
    if "matrix_product_state_max_bond_dimension" in options:
        meta["mps_max_bond_dimension"] = options["matrix_product_state_max_bond_dimension"]
    return {"ok": True, "result": body, "meta": meta}


def _body(p: SimulatePayload, parts: list[Part]) -> Part | Sweep:
    """The task's result: its one circuit's part, or one part per parameter binding."""
    if p.parameter_bindings is None:
        return parts[0]
    pairs = zip(p.parameter_bindings, parts, strict=True)
    return {"results": [{"parameters": b, **part} for b, part in pairs]}
