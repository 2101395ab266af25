"""Prove a QIR module by running it: qir-runner shots against the circuit's exact distribution.

The reference is computed from the circuit with qiskit's ``Statevector``, branching on every
measurement whose outcome is used later (a reset, a reused qubit, a condition) and reading
the remaining measurements off the final state. The module runs in the QIR Alliance's
qir-runner (an independent simulator that executes the bitcode itself). Three checks, each
with false-alarm probability at most ``DELTA`` for a correct module, so a failure means the
module computes something else (see docs/message-format.md, "QIR verification"):

1. support: no outcome occurs that the circuit cannot produce (outcomes whose exact
   probabilities together sum to at most ``DELTA / shots`` count as impossible);
2. total variation distance: ``TVD <= sqrt((k ln 2 + ln(1/DELTA)) / (2 shots))`` with ``k``
   the number of possible outcomes (Bretagnolle-Huber-Carol inequality);
3. likelihood: the mean exact probability of the observed outcomes is at least its
   expectation ``sum p^2`` minus a Bernstein margin; this is what still has power when
   ``k`` is large (a random 12-qubit circuit) and the TVD bound is loose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

DELTA = 1e-6
_LOG_INV_DELTA = math.log(1 / DELTA)


class ReferenceUnavailable(Exception):
    """The exact distribution can't be computed here (too large, an unsupported operation)."""


class OutputUnreadable(Exception):
    """qir-runner's output does not have the shape the module's output recording promises."""


# ---------------------------------------------------------------- exact reference
@dataclass(frozen=True)
class _Branch:
    prob: float
    state: Any  # qiskit Statevector
    bits: int  # classical register value, bit i = clbit i


def exact_distribution(circuit: Any, *, max_amplitudes: int = 1 << 24) -> np.ndarray:
    """Exact probabilities of every classical outcome (index = clbits as an integer)."""
    from qiskit.quantum_info import Statevector

    n, m = circuit.num_qubits, circuit.num_clbits
    if m > 24:
        raise ReferenceUnavailable(f"{m} classical bits are too many for an exact reference")
    sim = _Sim(max_branches=max(1, max_amplitudes >> n))
    start = [_Branch(1.0, Statevector.from_int(0, 2**n), 0)]
    branches, pending = sim.run(circuit, start, {}, list(range(n)), list(range(m)))
    dist = np.zeros(2**m)
    for br in branches:
        _add_terminal(dist, br, pending)
    return dist / dist.sum()


def _add_terminal(dist: np.ndarray, br: _Branch, pending: dict[int, int]) -> None:
    """Read the still-deferred measurements off the branch's final state."""
    if not pending:
        dist[br.bits] += br.prob
        return
    clbits = list(pending)
    qubits = [pending[c] for c in clbits]
    unique = sorted(set(qubits))
    probs = br.state.probabilities(unique)  # index bit j = qubit unique[j]
    base = br.bits
    for c in clbits:
        base &= ~(1 << c)
    idx = np.nonzero(probs > 0)[0]
    values = np.full(len(idx), base, dtype=np.int64)
    for c, q in zip(clbits, qubits, strict=True):
        values |= ((idx >> unique.index(q)) & 1) << c
    np.add.at(dist, values, br.prob * probs[idx])


Pending = dict[int, int]  # clbit -> qubit: measured, not collapsed until its outcome matters


class _Sim:
    """Walks a circuit scope; ``qmap``/``cmap`` map the scope's bit positions to global ones."""

    def __init__(self, max_branches: int) -> None:
        self.max_branches = max_branches

    def run(
        self,
        scope: Any,
        branches: list[_Branch],
        pending: Pending,
        qmap: list[int],
        cmap: list[int],
    ) -> tuple[list[_Branch], Pending]:
        for inst in scope.data:
            op = inst.operation
            name = op.name
            if name in ("barrier", "delay", "id"):
                continue
            qs = [qmap[scope.find_bit(q).index] for q in inst.qubits]
            cs = [cmap[scope.find_bit(c).index] for c in inst.clbits]
            read = set(cs)
            if name == "if_else":
                read |= {cmap[scope.find_bit(b).index] for b in _condition_bits(op.condition)}
            stale = {c for c, q in pending.items() if q in qs or c in read}
            branches, pending = self._collapse(branches, pending, stale)
            if name == "measure":
                pending[cs[0]] = qs[0]
            elif name == "reset":
                branches = self._reset(branches, qs[0])
            elif name == "if_else":
                branches = self._if_else(scope, op, branches, qs, cs, cmap)
            elif name == "box":
                branches, pending = self.run(op.blocks[0], branches, pending, qs, cs)
            elif getattr(op, "blocks", None) or not hasattr(op, "to_matrix"):
                if op.definition is None or getattr(op, "blocks", None):
                    raise ReferenceUnavailable(f"the exact reference does not model '{name}'")
                branches, pending = self.run(op.definition, branches, pending, qs, cs)
            else:
                branches = [self._apply(br, op, qs) for br in branches]
        return branches, pending

    def _apply(self, br: _Branch, op: Any, qs: list[int]) -> _Branch:
        try:
            state = br.state.evolve(op, qargs=qs)
        except Exception as exc:  # noqa: BLE001 - qiskit's reason, one line
            raise ReferenceUnavailable(f"cannot simulate '{op.name}': {exc}") from exc
        return _Branch(br.prob, state, br.bits)

    def _collapse(
        self, branches: list[_Branch], pending: Pending, clbits: set[int]
    ) -> tuple[list[_Branch], Pending]:
        pending = dict(pending)
        for c in sorted(clbits):
            q = pending.pop(c)
            out = []
            for br, bit in self._split(branches, q):
                out.append(_Branch(br.prob, br.state, _set(br.bits, c, bit)))
            branches = out
        return branches, pending

    def _reset(self, branches: list[_Branch], q: int) -> list[_Branch]:
        from qiskit.circuit.library import XGate

        # The |1> branch flips back to |0>; the two stay separate (different states).
        return [self._apply(b, XGate(), [q]) if bit else b for b, bit in self._split(branches, q)]

    def _split(self, branches: list[_Branch], q: int) -> list[tuple[_Branch, int]]:
        out: list[tuple[_Branch, int]] = []
        for br in branches:
            p1 = float(br.state.probabilities([q])[1])
            for bit, p in ((0, 1.0 - p1), (1, p1)):
                if p <= 1e-14:
                    continue
                data = br.state.data.copy()
                data[((np.arange(len(data)) >> q) & 1) != bit] = 0
                state = type(br.state)(data / math.sqrt(p), dims=br.state.dims())
                out.append((_Branch(br.prob * p, state, br.bits), bit))
        if len(out) > self.max_branches:
            raise ReferenceUnavailable(
                f"the exact reference needs more than {self.max_branches} measurement branches"
            )
        return out

    def _if_else(
        self,
        scope: Any,
        op: Any,
        branches: list[_Branch],
        qs: list[int],
        cs: list[int],
        cmap: list[int],
    ) -> list[_Branch]:
        def index(bit: Any) -> int:
            return cmap[scope.find_bit(bit).index]

        out: list[_Branch] = []
        for br in branches:
            taken = _evaluate(op.condition, br.bits, index)
            body = op.blocks[0] if taken else (op.blocks[1] if len(op.blocks) > 1 else None)
            if body is None:
                out.append(br)
                continue
            res, rest = self.run(body, [br], {}, qs, cs)
            # A measurement still deferred at the end of an arm is collapsed there: the
            # arms' states differ, so they can't share one deferred read-out.
            res, _ = self._collapse(res, rest, set(rest))
            out += res
        return out


def _set(bits: int, c: int, bit: int) -> int:
    return (bits | (1 << c)) if bit else (bits & ~(1 << c))


def _condition_bits(condition: Any) -> list[Any]:
    from qiskit.circuit import ClassicalRegister, Clbit
    from qiskit.circuit.classical import expr

    if isinstance(condition, tuple):
        target = condition[0]
        return [target] if isinstance(target, Clbit) else list(target)
    bits: list[Any] = []
    for var in expr.iter_vars(condition):
        if isinstance(var.var, Clbit):
            bits.append(var.var)
        elif isinstance(var.var, ClassicalRegister):
            bits.extend(var.var)
        else:
            raise ReferenceUnavailable("the exact reference does not model classical variables")
    return bits


def _evaluate(condition: Any, bits: int, index: Any) -> bool:
    from qiskit.circuit import Clbit

    if isinstance(condition, tuple):
        target, value = condition
        if isinstance(target, Clbit):
            return ((bits >> index(target)) & 1) == int(value)
        return _reg_value(target, bits, index) == int(value)
    return bool(_expr(condition, bits, index))


def _reg_value(reg: Any, bits: int, index: Any) -> int:
    return sum(((bits >> index(b)) & 1) << i for i, b in enumerate(reg))


def _expr(node: Any, bits: int, index: Any) -> int | bool:
    from qiskit.circuit import Clbit
    from qiskit.circuit.classical import expr, types

    if isinstance(node, expr.Var):
        if isinstance(node.var, Clbit):
            return bool((bits >> index(node.var)) & 1)
        return _reg_value(node.var, bits, index)
    if isinstance(node, expr.Value):
        return node.value
    if isinstance(node, expr.Cast):
        inner = _expr(node.operand, bits, index)
        return bool(inner) if node.type.kind is types.Bool else int(inner)
    if isinstance(node, expr.Unary):
        v = _expr(node.operand, bits, index)
        if node.op is expr.Unary.Op.LOGIC_NOT:
            return not v
        width = getattr(node.type, "width", 1)
        return (~int(v)) & ((1 << width) - 1)
    if isinstance(node, expr.Binary):
        a, b = _expr(node.left, bits, index), _expr(node.right, bits, index)
        ops = {
            "EQUAL": lambda: a == b,
            "NOT_EQUAL": lambda: a != b,
            "LESS": lambda: a < b,
            "LESS_EQUAL": lambda: a <= b,
            "GREATER": lambda: a > b,
            "GREATER_EQUAL": lambda: a >= b,
            "LOGIC_AND": lambda: bool(a) and bool(b),
            "LOGIC_OR": lambda: bool(a) or bool(b),
            "BIT_AND": lambda: int(a) & int(b),
            "BIT_OR": lambda: int(a) | int(b),
            "BIT_XOR": lambda: int(a) ^ int(b),
        }
        if node.op.name in ops:
            return ops[node.op.name]()
    raise ReferenceUnavailable(f"the exact reference does not model the condition {node}")


# ---------------------------------------------------------------- running the module
def record_order(entry: Any) -> list[int]:
    """Result ids in the order the entry point records them (one RESULT line each)."""
    import pyqir

    order: list[int] = []
    for block in entry.basic_blocks:
        for inst in block.instructions:
            if isinstance(inst, pyqir.Call) and inst.callee.name.endswith("result_record_output"):
                rid = pyqir.ptr_id(inst.args[0])
                if rid is None:
                    raise OutputUnreadable("a recorded result is not a constant id")
                order.append(rid)
    return order


def run_shots(bitcode: bytes, entry_name: str, shots: int, seed: int, order: list[int]) -> dict:
    """Run the module ``shots`` times in qir-runner; counts keyed by results as an integer."""
    import qirrunner

    lines: list[str] = []
    qirrunner.run_bytes(
        bitcode,
        entry_point=entry_name,
        shots=shots,
        rng_seed=seed,
        output_fn=lambda out: lines.append(str(out)),
    )
    counts: dict[int, int] = {}
    value, slot, started = 0, 0, 0
    for chunk in "".join(lines).splitlines():
        kind, _, rest = chunk.partition("\t")
        if kind == "START":
            value, slot, started = 0, 0, started + 1
        elif kind == "OUTPUT" and rest.startswith("RESULT\t"):
            if slot >= len(order):
                raise OutputUnreadable("qir-runner reported more results than the module records")
            if rest.split("\t")[1].strip() == "1":
                value |= 1 << order[slot]
            slot += 1
        elif kind == "END":
            if slot != len(order):
                raise OutputUnreadable(f"a shot recorded {slot} results, expected {len(order)}")
            if rest.strip() != "0":
                raise OutputUnreadable(f"a shot ended with exit code {rest.strip()}")
            counts[value] = counts.get(value, 0) + 1
    if started != shots or sum(counts.values()) != shots:
        raise OutputUnreadable(f"qir-runner reported {sum(counts.values())} of {shots} shots")
    return counts


# ---------------------------------------------------------------- comparing
def tvd_bound(shots: int, support: int) -> float:
    """TVD a correct module stays under with probability >= 1 - DELTA (documented)."""
    return math.sqrt((support * math.log(2) + _LOG_INV_DELTA) / (2 * shots))


class Figures(TypedDict, total=False):
    """What :func:`compare` found: shots, the TVD and its bound, the support and the mean
    probability of the outcomes with its floor; ``problem`` (always set: None when the
    module matches) is for the caller, which takes it out of the record it keeps."""

    shots: int
    tvd: float
    tvd_bound: float
    support: int
    mean_probability: float
    mean_probability_min: float
    problem: str | None


def compare(exact: np.ndarray, counts: dict[int, int], shots: int) -> Figures:
    """The three checks; ``problem`` is None when the module matches."""
    order = np.argsort(exact)
    cumulative = np.cumsum(exact[order])
    impossible_cut = int(np.searchsorted(cumulative, DELTA / shots, side="right"))
    impossible = set(order[:impossible_cut].tolist())
    support = len(exact) - impossible_cut
    observed = np.fromiter(counts, dtype=np.int64, count=len(counts))
    freq = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) / shots
    p_obs = exact[observed]
    tvd = 0.5 * (float(np.abs(freq - p_obs).sum()) + max(0.0, 1.0 - float(p_obs.sum())))
    bound = tvd_bound(shots, support)
    mean_p = float((freq * p_obs).sum())
    expect = float((exact**2).sum())
    var = float((exact**3).sum()) - expect**2
    b = float(exact.max())
    k = 2 * b * _LOG_INV_DELTA / 3
    margin = (k + math.sqrt(k * k + 8 * shots * max(var, 0.0) * _LOG_INV_DELTA)) / (2 * shots)
    figures: Figures = {
        "shots": shots,
        "tvd": round(tvd, 6),
        "tvd_bound": round(bound, 6),
        "support": support,
        "mean_probability": mean_p,
        "mean_probability_min": expect - margin,
    }
    bad = sorted(int(v) for v in observed if int(v) in impossible)
    width = max(1, int(math.log2(len(exact))))
    if bad:
        figures["problem"] = (
            f"outcome {bad[0]:0{width}b} occurred {counts[bad[0]]} times but the circuit "
            "cannot produce it"
        )
    elif tvd > bound:
        figures["problem"] = f"TVD {tvd:.4f} over {shots} shots exceeds the bound {bound:.4f}"
    elif mean_p < expect - margin:
        figures["problem"] = (
            f"the observed outcomes are unlikely under the circuit (mean probability "
            f"{mean_p:.3g} < {expect - margin:.3g})"
        )
    else:
        figures["problem"] = None
    return figures
