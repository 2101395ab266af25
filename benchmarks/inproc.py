"""The baseline: the user's own loop, ``AerSimulator().run(circuit)`` one circuit at a time.

Runs as its own process (``python -m benchmarks.inproc``) so the OpenMP environment is the
one the benchmark chose, not whatever the harness already loaded. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qasm-file", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--shots", type=int, default=100)
    ap.add_argument("--mode", choices=["loop", "one-call"], default="loop")
    ap.add_argument("--reps", type=int, default=1, help="repeat; wall_s is the fastest")
    args = ap.parse_args()

    from qiskit import qasm2
    from qiskit_aer import AerSimulator

    with open(args.qasm_file) as f:
        circuit = qasm2.loads(f.read(), custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    sim = AerSimulator()
    sim.run(circuit, shots=args.shots).result()  # warm-up: first call loads kernels
    walls = []
    for _ in range(args.reps):
        total = 0
        start = time.perf_counter()
        if args.mode == "loop":
            for _ in range(args.n):
                counts = sim.run(circuit, shots=args.shots).result().get_counts()
                total += sum(counts.values())
        else:
            result = sim.run([circuit] * args.n, shots=args.shots).result()
            total = sum(sum(result.get_counts(i).values()) for i in range(args.n))
        walls.append(time.perf_counter() - start)
        assert total == args.n * args.shots, total
    wall = min(walls)
    print(
        json.dumps(
            {
                "n": args.n,
                "wall_s": wall,
                "walls_s": walls,
                "per_s": args.n / wall,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "num_qubits": circuit.num_qubits,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
