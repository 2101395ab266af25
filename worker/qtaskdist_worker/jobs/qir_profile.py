"""QIR profile compliance, checked twice: on the source program and on the produced module.

The source check walks the OpenQASM program (QASM 2 parses as QASM 3 for this purpose) and
names the first construct the requested profile can't express, with its line. The module
check walks the bitcode with pyqir, so a converter bug that slips a branch into a module
labelled ``base`` (qbraid-qir's ``profile="base"`` accepts ``if``/``else``) is caught too.

What each profile allows here (QIR Alliance profile specifications):

- ``base``: one basic block (no branch of any kind), only ``call`` and ``ret``; static qubit
  and result ids; no qubit used after it was measured; no results read back.
- ``adaptive``: forward branching on measurement results, mid-circuit measurement, qubit
  reuse and reset; still no loops (no backward branch), no dynamic qubit or result
  management, no other defined functions.
"""

from __future__ import annotations

from typing import Any

from qtaskdist_jupyter.core.errors import ProfileViolation, QirModuleInvalid

_SUGGEST = ' (use profile: "adaptive")'


# ---------------------------------------------------------------- source
_NOT_A_USE = ("barrier", "delay")


def may_break_profile(circuit: Any) -> bool:
    """Could the program break a profile? True for any control flow (if, loops, switch,
    box) and for a qubit used or measured again after its measurement; else no profile
    refuses it and :func:`check_source` need not parse it again. Conservative: True only
    sends the program to the source walk, which decides."""
    measured: set[Any] = set()
    for inst in circuit.data:
        op = inst.operation
        if getattr(op, "blocks", None):
            return True
        if op.name in _NOT_A_USE:
            continue
        if measured.intersection(inst.qubits):
            return True
        if op.name == "measure":
            measured.update(inst.qubits)
    return False


def check_source(program: str, profile: str, where: str = "line {}") -> None:
    """Raise ProfileViolation naming the first construct ``profile`` can't express."""
    from openqasm3 import ast

    from qtaskdist_jupyter.core.circuits.codec import qasm3_tree

    try:
        tree = qasm3_tree(program)  # the codec's parse of this very program, if just made
    except Exception:  # noqa: BLE001 - the codec parsed it already; the module check remains
        return
    walker = _SourceWalker(profile, where, ast)
    walker.block(tree.statements)


class _SourceWalker:
    def __init__(self, profile: str, where: str, ast: Any) -> None:
        self.profile, self.where, self.ast = profile, where, ast
        self.registers: dict[str, int | None] = {}  # qubit register -> size (None: one qubit)
        self.measured: dict[tuple[str, int], int] = {}  # qubit -> line of its measurement

    def refuse(self, construct: str, node: Any, *, adaptive_ok: bool) -> None:
        if self.profile == "adaptive" and adaptive_ok:
            return
        at = self.where.format(node.span.start_line if node.span else "?")
        if self.profile == "base" and adaptive_ok:
            msg = f"{construct} at {at}: the base profile does not allow it"
            raise ProfileViolation(msg + _SUGGEST)
        raise ProfileViolation(
            f"{construct} at {at}: QIR's {self.profile} profile can't express it"
        )

    def block(self, statements: list[Any]) -> None:
        a = self.ast
        for s in statements:
            if isinstance(s, a.QubitDeclaration):
                size = s.size.value if isinstance(s.size, a.IntegerLiteral) else 1
                self.registers[s.qubit.name] = size if s.size is not None else None
            elif isinstance(s, a.BranchingStatement):
                self.refuse("an if/else on a measurement result", s, adaptive_ok=True)
                self.block(s.if_block)
                self.block(s.else_block)
            elif isinstance(s, a.WhileLoop | a.ForInLoop):
                self.refuse("a loop", s, adaptive_ok=False)
            elif isinstance(s, a.SwitchStatement):
                self.refuse("a switch statement", s, adaptive_ok=True)
                for _, body in s.cases:
                    self.block(body.statements)
            elif isinstance(s, a.SubroutineDefinition | a.ExternDeclaration):
                self.refuse("a subroutine", s, adaptive_ok=False)
            elif isinstance(s, a.Box):
                self.block(s.body)
            elif isinstance(s, a.QuantumMeasurementStatement):
                self.use(s.measure.qubit, s, measure=True)
            elif isinstance(s, a.QuantumGate):
                for q in s.qubits:
                    self.use(q, s)
            elif isinstance(s, a.QuantumReset):
                self.use(s.qubits, s)

    def use(self, ref: Any, node: Any, *, measure: bool = False) -> None:
        for qubit in self.resolve(ref, node):
            if qubit in self.measured:
                reg, i = qubit
                name = reg if self.registers.get(reg) is None else f"{reg}[{i}]"
                self.refuse(
                    f"qubit {name}, measured at {self.where.format(self.measured[qubit])}, "
                    "used again",
                    node,
                    adaptive_ok=True,
                )
            if measure:
                self.measured[qubit] = node.span.start_line if node.span else 0

    def resolve(self, ref: Any, node: Any) -> list[tuple[str, int]]:
        a = self.ast
        if isinstance(ref, a.Identifier):
            return [(ref.name, i) for i in range(self.registers.get(ref.name) or 1)]
        if isinstance(ref, a.IndexedIdentifier):
            name = ref.name.name
            out: list[tuple[str, int]] = []
            for index in ref.indices:
                items = index if isinstance(index, list) else getattr(index, "values", [index])
                for item in items:
                    if isinstance(item, a.IntegerLiteral):
                        out.append((name, item.value))
                    elif isinstance(item, a.RangeDefinition) and (
                        bounds := _literal_range(item, a)
                    ):
                        start, stop, step = bounds
                        out += [(name, i) for i in range(start, stop + 1, step)]
                    else:
                        self.refuse("a dynamic qubit index", node, adaptive_ok=False)
            return out
        return []  # anything else (an alias): the module check covers it


def _literal_range(r: Any, a: Any) -> tuple[int, int, int] | None:
    parts = [r.start, r.end, r.step]
    if not all(p is None or isinstance(p, a.IntegerLiteral) for p in parts):
        return None
    if r.start is None or r.end is None:
        return None
    return r.start.value, r.end.value, r.step.value if r.step is not None else 1


# ---------------------------------------------------------------- module
_MEASURES = ("__quantum__qis__mz__body", "__quantum__qis__m__body", "__quantum__qis__mresetz__body")
_ADAPTIVE_OPS = set(
    "call br ret phi select icmp and or xor zext sext trunc add sub mul shl lshr ashr".split()
)


def check_module(module: Any, entry: Any, profile: str) -> None:
    """Walk the produced module; raise QirModuleInvalid on anything ``profile`` forbids."""
    import pyqir

    def bad(what: str) -> QirModuleInvalid:
        return QirModuleInvalid(
            f"the converter produced a module that breaks the {profile} profile ({what}); "
            "it was not returned"
        )

    label = _attr(entry, "qir_profiles")
    if label != profile:
        raise bad(f"it is labelled qir_profiles={label!r}")
    for flag in ("dynamic_qubit_management", "dynamic_result_management"):
        if getattr(pyqir, flag)(module):
            raise bad(f"{flag} is on")
    defined = [f.name for f in module.functions if f.basic_blocks and f.name != entry.name]
    if defined:
        raise bad(f"it defines the function {defined[0]!r} besides the entry point")
    n_qubits = pyqir.required_num_qubits(entry) or 0
    n_results = pyqir.required_num_results(entry) or 0
    blocks = list(entry.basic_blocks)
    if profile == "base" and len(blocks) != 1:
        raise bad(f"the entry point has {len(blocks)} basic blocks; base allows one, no branch")
    if _has_cycle(blocks):
        raise bad("a backward branch (a loop)")
    measured: set[int] = set()
    for block in blocks:
        for inst in block.instructions:
            op = str(inst.opcode).rsplit(".", 1)[-1].lower()
            if profile == "base" and op not in ("call", "ret"):
                raise bad(f"a '{op}' instruction")
            if profile == "adaptive" and op not in _ADAPTIVE_OPS:
                raise bad(f"a '{op}' instruction")
            if isinstance(inst, pyqir.Call):
                _check_call(inst, profile, n_qubits, n_results, measured, bad)


def _check_call(
    inst: Any, profile: str, n_qubits: int, n_results: int, measured: set[int], bad: Any
) -> None:
    import pyqir

    name = inst.callee.name
    if not name.startswith(("__quantum__qis__", "__quantum__rt__")):
        raise bad(f"a call to {name!r}")
    if "allocate" in name or "release" in name:
        raise bad(f"dynamic qubit or result management ({name})")
    qis = name.startswith("__quantum__qis__")
    if profile == "base" and qis and not inst.type.is_void:
        raise bad(f"{name} returns a value (a result read back)")
    if not qis or name == "__quantum__qis__read_result__body":
        roles = ["result"] if ("record_output" in name or qis) else []
    elif name in _MEASURES:
        roles = ["qubit", "result"]
    else:
        roles = ["qubit"] * len(inst.args)
    qubits = []
    pointers = [a for a in inst.args if isinstance(a.type, pyqir.PointerType)]
    for arg, role in zip(pointers, roles, strict=False):
        ident = pyqir.ptr_id(arg)
        if ident is None:
            raise bad(f"a dynamic {role} in {name}")
        limit = n_qubits if role == "qubit" else n_results
        if ident >= limit:
            raise bad(f"{role} {ident} is beyond required_num_{role}s={limit}")
        if role == "qubit":
            qubits.append(ident)
    if profile == "base" and qis and measured & set(qubits):
        raise bad(f"qubit {min(measured & set(qubits))} is used after its measurement")
    if name in _MEASURES:
        measured.update(qubits)


def _has_cycle(blocks: list[Any]) -> bool:
    import pyqir

    names = [b.name for b in blocks]
    succ = {
        b.name: [o.name for o in b.terminator.operands if isinstance(o, pyqir.BasicBlock)]
        for b in blocks
        if b.terminator is not None
    }
    if len(set(names)) != len(names):
        return len(blocks) > 1 and any(succ.values())  # unnamed blocks: can't tell, refuse
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done

    def visit(name: str) -> bool:
        state[name] = 1
        for nxt in succ.get(name, []):
            if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                return True
        state[name] = 2
        return False

    return any(name not in state and visit(name) for name in names)


def _attr(entry: Any, key: str) -> str | None:
    try:
        return entry.attributes.func[key].string_value
    except (KeyError, AttributeError):
        return None
