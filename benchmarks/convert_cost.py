"""``python -m benchmarks.convert_cost``: where one QIR conversion's time goes, in-process.

Times each stage of the worker's conversion of the B2 Bell program (``c_qir_convert``,
base profile) and, interleaved in rounds so machine noise hits both alike, the worker's
whole conversion of distinct programs (no repeat to share) against the bare
``qasm3_to_qir`` + pyqir verify loop of B2-CONVERT. Prints milliseconds per call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from .workloads import BELL3, Loop


def _per_call_ms(fn: Callable[[], Any], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def stages(n: int) -> dict[str, float]:
    import openqasm3
    import pyqasm
    import pyqir
    from qbraid_qir.qasm3 import qasm3_to_qir
    from qiskit import qasm3
    from qtaskdist_worker.jobs import convert as job
    from qtaskdist_worker.jobs import qir_profile, qir_verify
    from qtaskdist_worker.jobs.common import limits_from, load_circuit

    limits = limits_from(None)
    circuit = load_circuit(BELL3, "auto", limits)
    program = job._to_qasm3(job.prepare(circuit))
    bitcode = qasm3_to_qir(program, name="main", profile="base").bitcode
    module = pyqir.Module.from_bitcode(pyqir.Context(), bitcode)
    (entry,) = [f for f in module.functions if pyqir.is_entry_point(f)]
    order = qir_verify.record_order(entry)
    timed = {
        "qiskit parse (codec.load_circuit: scan + Rust parser)": lambda: load_circuit(
            BELL3, "auto", limits
        ),
        "  the ANTLR path instead (qasm3.loads)": lambda: qasm3.loads(BELL3),
        "  openqasm3.parse alone": lambda: openqasm3.parse(BELL3),
        "profile pre-check of the circuit (may_break_profile)": lambda: (
            qir_profile.may_break_profile(circuit)
        ),
        "source profile walk, when needed (walk; its parse: above)": lambda: (
            qir_profile.check_source(BELL3 + "// other\n", "base")
        ),
        "prepare + OpenQASM 3 export": lambda: job._to_qasm3(job.prepare(circuit)),
        "qasm3_to_qir of the export": lambda: qasm3_to_qir(program, name="main", profile="base"),
        "  of which pyqasm.loads": lambda: pyqasm.loads(program),
        "pyqir re-parse + verify + module check": lambda: qir_profile.check_module(
            pyqir.Module.from_bitcode(pyqir.Context(), bitcode), entry, "base"
        ),
        "exact reference distribution": lambda: qir_verify.exact_distribution(circuit),
        "qir-runner, 10 + 990 shots": lambda: (
            qir_verify.run_shots(bitcode, entry.name, 10, 1, order),
            qir_verify.run_shots(bitcode, entry.name, 990, 2, order),
        ),
    }
    return {name: _per_call_ms(fn, n) for name, fn in timed.items()}


def ours_vs_bare(n: int, rounds: int, verify: str) -> dict[str, float]:
    loop = Loop()
    loop.own_convert(-1, verify)
    ours, bare = [], []
    for r in range(rounds):
        ids = iter(range(r * n, (r + 1) * n))  # distinct programs: none is shared
        ours.append(_per_call_ms(lambda ids=ids: loop.own_convert(next(ids), verify), n - 1))
        bare.append(_per_call_ms(loop.convert, n))
    return {"ours_ms": min(ours), "bare_ms": min(bare), "ratio": min(ours) / min(bare)}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.convert_cost")
    ap.add_argument("--n", type=int, default=200, help="calls per stage and per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for name, ms in stages(args.n).items():
        print(f"{name:45s} {ms:7.3f} ms")
    for verify in ("static", "auto"):
        got = ours_vs_bare(args.n, args.rounds, verify)
        print(
            f"one conversion, verify {verify!r:8s}: ours {got['ours_ms']:.3f} ms, bare loop "
            f"{got['bare_ms']:.3f} ms, ours/bare {got['ratio']:.2f} (best of {args.rounds})"
        )


if __name__ == "__main__":
    main()
