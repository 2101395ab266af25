"""``python -m benchmarks.parse_overhead``: what parsing in a sandboxed child adds per submit.

Interleaved in rounds (so machine noise hits both alike), the server's circuit check of
distinct circuits (no repeat to share a parse) in this process
(``codec.inspect_circuit``) and through a warm ``ParsePool`` child (the server's counting
checks here, the parse there, JSON both ways). Prints milliseconds per circuit.
"""

from __future__ import annotations

import argparse
import base64
import io
import time

from qtaskdist_jupyter.core.circuits import codec
from qtaskdist_jupyter.core.circuits.sandbox import ParsePool
from qtaskdist_jupyter.core.config import Limits

QASM2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
QASM3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\n'


def programs(fmt: str, n: int) -> list[str]:
    """``n`` distinct Bell-like programs of ``fmt``."""
    if fmt == "qasm2":
        return [QASM2 + f"rx({i}) q[0];\ncx q[0],q[1];\nmeasure q -> c;\n" for i in range(n)]
    if fmt == "qasm3":
        return [QASM3 + f"rx({i}) q[0];\ncx q[0], q[1];\nc = measure q;\n" for i in range(n)]
    from qiskit import QuantumCircuit, qpy

    out = []
    for i in range(n):
        qc = QuantumCircuit(2, 2)
        qc.rx(i, 0)
        qc.cx(0, 1)
        qc.measure([0, 1], [0, 1])
        buf = io.BytesIO()
        qpy.dump(qc, buf)
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="distinct circuits per format and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    limits = Limits()
    codec.warm_up()
    pool = ParsePool(1, limits.parse_memory_bytes, limits.parse_time_s)
    try:
        pool.inspect(programs("qasm2", 1)[0], "auto", limits)  # the child is warm
        for fmt in ("qasm2", "qasm3", "qpy"):
            inproc, sandboxed = [], []
            for r in range(args.rounds):
                # distinct per round, so neither side sees a program twice
                batch = [p + f"// {r}\n" if fmt != "qpy" else p for p in programs(fmt, args.n)]
                for timings, check in (
                    (inproc, lambda s: codec.inspect_circuit(s, "auto", limits=limits)),
                    (sandboxed, lambda s: pool.inspect(s, "auto", limits)),
                ):
                    start = time.perf_counter()
                    for source in batch:
                        check(source)
                    timings.append((time.perf_counter() - start) / args.n * 1e3)
            a, b = min(inproc), min(sandboxed)
            print(f"{fmt:6} in-process {a:6.2f} ms  sandboxed {b:6.2f} ms  (+{b - a:.2f} ms)")
    finally:
        pool.close()


if __name__ == "__main__":
    main()
