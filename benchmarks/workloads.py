"""The workloads users send (issue 12), each with its in-process baseline.

One module for both sides, so the pipeline and the baseline run the same circuits with
the same seeds: :func:`specs` builds the task specs the harness submits, and
:func:`run_inproc` does the same work in one process, the way a user would in a notebook
(``python -m benchmarks.workloads`` runs it in a process of its own, so the OpenMP
environment is the one the harness chose).

Workloads (each task → the user's own loop):

* seeded: a Bell circuit as OpenQASM 2 text, 100 shots, ``seed = i`` → parse, then
  ``AerSimulator().run(qc, shots=100, seed_simulator=i)``;
* convert: a Bell circuit as OpenQASM 3 text to QIR (base profile, ``verify: "static"``:
  profile checks, no execution) → ``qasm3_to_qir``, then pyqir parses and verifies the
  bitcode; ``convert-exec`` is the same with the default ``verify`` (each module executed
  in qir-runner), against the same loop, so the cost of that check shows as a ratio;
  ``convert-distinct`` is ``convert`` with a comment of its own in each program, so no
  task repeats another (a job process shares repeats), against the same loop, and
  ``convert-distinct-exec`` the same with the default ``verify``;
  ``own-convert[-exec]`` is the worker's own conversion function in one process, each
  task made distinct the same way, so that none is a repeat the job process shares (its
  cost per conversion, against the loop's);
* observables: one point of a 4-qubit VQE ansatz, 4 Pauli terms, ``seed = i`` → bind θ
  into the template (saves built once), ``run``;
* mixed: the three above interleaved, a third each → the three loops, interleaved;
* sweep (B7): one task of N bindings (or N/chunk tasks) with the 4 Pauli terms → ONE
  ``run(ansatz, parameter_binds=...)``, the in-process batched call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

BELL2 = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "h q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
)
BELL3 = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\n'
    "h q[0];\ncx q[0], q[1];\nc = measure q;\n"
)
# A hardware-efficient 4-qubit ansatz with one angle, as a VQE scan sends it.
ANSATZ4 = """OPENQASM 3.0;
include "stdgates.inc";
input float[64] theta;
qubit[4] q;
bit[4] c;
x q[0];
x q[1];
ry(theta) q[0];
ry(theta) q[1];
ry(theta) q[2];
ry(theta) q[3];
cx q[0], q[1];
cx q[1], q[2];
cx q[2], q[3];
ry(theta) q[0];
ry(theta) q[3];
c = measure q;
"""
OBSERVABLES = ["ZZII", "IZZI", "IIZZ", "XXXX"]
SHOTS = 100


def theta(i: int, n: int) -> float:
    """The i-th of n angles across [-pi, pi]."""
    return -math.pi + 2 * math.pi * i / max(1, n - 1)


def seeded_spec(i: int) -> dict[str, Any]:
    return {"task_type": "simulate", "payload": {"circuit": BELL2, "shots": SHOTS, "seed": i}}


def convert_spec(i: int, verify: str = "static", *, distinct: bool = False) -> dict[str, Any]:
    # distinct: a comment of its own makes each program text unique (the same work).
    circuit = BELL3 + f"// task {i}\n" if distinct else BELL3
    payload = {"circuit": circuit, "profile": "base", "verify": verify}
    return {"task_type": "c_qir_convert", "payload": payload}


def observables_spec(i: int, n: int) -> dict[str, Any]:
    payload = {
        "circuit": ANSATZ4,
        "shots": SHOTS,
        "seed": i,
        "parameter_bindings": [{"theta": theta(i, n)}],
        "observables": OBSERVABLES,
    }
    return {"task_type": "simulate", "payload": payload}


def sweep_specs(n_points: int, chunk: int, seed: int = 7) -> list[dict[str, Any]]:
    """One sweep of n_points bindings, cut into tasks of ``chunk`` bindings."""
    points = [{"theta": theta(i, n_points)} for i in range(n_points)]
    return [
        {
            "task_type": "simulate",
            "payload": {
                "circuit": ANSATZ4,
                "shots": SHOTS,
                "seed": seed,
                "parameter_bindings": points[k : k + chunk],
                "observables": OBSERVABLES,
            },
        }
        for k in range(0, n_points, chunk)
    ]


def kind_of(workload: str, i: int) -> str:
    return ("seeded", "convert", "observables")[i % 3] if workload == "mixed" else workload


def verify_of(workload: str) -> str:
    return "auto" if workload.endswith("-exec") else "static"


def specs(workload: str, n: int) -> list[dict[str, Any]]:
    """The n task specs of a B2 workload, in submission order."""
    out = []
    for i in range(n):
        kind = kind_of(workload, i)
        if kind == "seeded":
            out.append(seeded_spec(i))
        elif kind.startswith("convert"):
            out.append(convert_spec(i, verify_of(kind), distinct="-distinct" in kind))
        else:
            out.append(observables_spec(i, n))
    return out


# ---- in-process ----------------------------------------------------------------------
class Loop:
    """The user's own loop, one task at a time (imports and warm-up done beforehand)."""

    def __init__(self) -> None:
        from qiskit import qasm2, qasm3
        from qiskit.quantum_info import SparsePauliOp
        from qiskit_aer import AerSimulator

        self.qasm2 = qasm2
        self.sim = AerSimulator()
        ansatz = qasm3.loads(ANSATZ4)
        self.theta = next(iter(ansatz.parameters))
        # The template with its saves, built once as a user would: each point only binds.
        body = ansatz.copy_empty_like()
        for inst in ansatz.data:
            if inst.operation.name != "measure":
                body.append(inst)
        for k, label in enumerate(OBSERVABLES):
            body.save_expectation_value(SparsePauliOp(label), range(4), label=f"exp{k}")
        for inst in ansatz.data:
            if inst.operation.name == "measure":
                body.append(inst)
        self.template = body
        self.seeded(0)
        self.convert()
        self.observables(0, 2)

    def seeded(self, i: int) -> dict[str, int]:
        qc = self.qasm2.loads(BELL2, custom_instructions=self.qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        return dict(self.sim.run(qc, shots=SHOTS, seed_simulator=i).result().get_counts())

    def convert(self) -> int:
        import pyqir
        from qbraid_qir.qasm3 import qasm3_to_qir

        module = qasm3_to_qir(BELL3, name="main", profile="base")
        reparsed = pyqir.Module.from_bitcode(pyqir.Context(), module.bitcode)
        assert reparsed.verify() is None
        return len(module.bitcode)

    def own_convert(self, i: int, verify: str) -> int:
        """The worker's own conversion (profile checks, decomposition, pyqir checks and,
        unless static, execution in qir-runner), called in this process; task i's program
        is distinct, so every call converts (no repeat to share)."""
        from qtaskdist_worker.jobs.convert import run_many

        payload = convert_spec(i, verify, distinct=True)["payload"]
        task = {"task_id": "t", "payload": payload}
        reply = run_many({"tasks": [task]})["replies"]["t"]
        assert reply["ok"], reply
        return len(reply["result"]["bitcode_base64"])

    def observables(self, i: int, n: int) -> list[float]:
        bound = self.template.assign_parameters({self.theta: theta(i, n)})
        data = self.sim.run(bound, shots=SHOTS, seed_simulator=i).result().data(0)
        return [float(data[f"exp{k}"]) for k in range(len(OBSERVABLES))]

    def sweep(self, n_points: int, seed: int = 7) -> list[list[float]]:
        """The in-process batched call: one run, Aer binds every point."""
        values = [theta(i, n_points) for i in range(n_points)]
        res = self.sim.run(
            self.template, parameter_binds=[{self.theta: values}], shots=SHOTS, seed_simulator=seed
        ).result()
        return [[float(res.data(k)[f"exp{j}"]) for j in range(4)] for k in range(n_points)]


def run_inproc(workload: str, n: int, reps: int) -> dict[str, Any]:
    loop = Loop()
    if workload.startswith("own-"):
        loop.own_convert(-1, verify_of(workload))  # its imports and first-call costs
    walls = []
    answers: list[Any] = []
    for _ in range(reps):
        answers = []
        start = time.perf_counter()
        if workload == "sweep":
            answers = loop.sweep(n)
        else:
            for i in range(n):
                kind = kind_of(workload, i)
                if kind == "seeded":
                    answers.append(loop.seeded(i))
                elif kind.startswith("convert"):
                    answers.append(loop.convert())
                elif kind.startswith("own-convert"):
                    answers.append(loop.own_convert(i, verify_of(kind)))
                else:
                    answers.append(loop.observables(i, n))
        walls.append(time.perf_counter() - start)
    return {
        "workload": workload,
        "n": n,
        "wall_s": min(walls),
        "walls_s": walls,
        "per_s": n / min(walls),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "answers": answers,
    }


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.workloads")
    converts = ["convert", "convert-exec", "convert-distinct", "convert-distinct-exec"]
    kinds = ["seeded", *converts, *(f"own-{k}" for k in converts)]
    ap.add_argument("workload", choices=[*kinds, "observables", "mixed", "sweep"])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--reps", type=int, default=1, help="repeat; wall_s is the fastest")
    ap.add_argument("--out", required=True, help="JSON file for the timings and answers")
    args = ap.parse_args()
    out = run_inproc(args.workload, args.n, args.reps)
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
