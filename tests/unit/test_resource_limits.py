"""Issue 23, resources: the per-task memory estimate, the counts bound, the stored-task
quota, how a job's memory failure reads, and the defaults of the new limits (pure
functions, no services)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from qtaskdist_worker.cli import build_parser
from qtaskdist_worker.memlimit import (
    SLACK_BYTES,
    as_memory_error,
    default_headroom_bytes,
    headroom_bytes,
)

from qtaskdist_jupyter.core import arrays, counts
from qtaskdist_jupyter.core.budget import (
    aer_max_memory_mb,
    check_submit,
    check_task_memory,
    resolve_method,
    state_bytes,
    task_memory,
)
from qtaskdist_jupyter.core.config import Limits, load_limits
from qtaskdist_jupyter.core.errors import (
    LimitExceeded,
    MemoryExceeded,
    PermanentJobError,
    QuotaExceeded,
    ResultTooLarge,
)
from qtaskdist_jupyter.core.retention import check_stored_tasks, gc_due
from qtaskdist_jupyter.kernel.lazy_result import LazyResult

GIB = 1024**3
ROTATIONS = frozenset({"h", "rx", "cx", "measure"})
CLIFFORD = frozenset({"h", "cx", "s", "measure", "barrier"})


# ---- the memory estimate ---------------------------------------------------------------
def test_state_sizes_per_method() -> None:
    assert state_bytes("statevector", 30) == 16 * 2**30 == 16 * GIB
    assert state_bytes("density_matrix", 15) == 16 * 4**15 == 16 * GIB
    assert state_bytes("stabilizer", 30) == 16 * 30 * 30
    # MPS: 2n site tensors of chi x chi plus the SVD work, chi capped at 512 (the default
    # QTASKDIST_MPS_MAX_BOND_DIMENSION) or 2^(n/2) when smaller.
    assert state_bytes("matrix_product_state", 30) == 16 * 512**2 * (2 * 30 + 16)
    assert state_bytes("matrix_product_state", 4) == 16 * 4**2 * (2 * 4 + 16)
    assert state_bytes("matrix_product_state", 30, 64) == 16 * 64**2 * 76


def test_the_default_budget_refuses_a_30_qubit_statevector_and_admits_28() -> None:
    budget = Limits().max_task_memory_bytes
    assert budget == 4 * GIB
    with pytest.raises(LimitExceeded) as info:
        check_task_memory({"method": "statevector"}, 30, ROTATIONS, budget)
    err = info.value
    assert err.code == "limit_exceeded" and err.http_status == 422
    assert err.detail["limit"] == "max_task_memory_bytes" and err.field == "payload.method"
    assert err.detail["value"] == 16 * GIB and err.detail["maximum"] == budget
    assert "16.0 GiB" in err.message and "QTASKDIST_MAX_TASK_MEMORY_BYTES is 4.0 GiB" in err.message
    assert "\n" not in err.message
    assert check_task_memory({"method": "statevector"}, 28, ROTATIONS, budget) == 4 * GIB


def test_density_matrix_counts_four_to_the_n() -> None:
    budget = 4 * GIB
    assert check_task_memory({"method": "density_matrix"}, 14, ROTATIONS, budget) == 4 * GIB
    with pytest.raises(LimitExceeded, match="15-qubit density_matrix"):
        check_task_memory({"method": "density_matrix"}, 15, ROTATIONS, budget)


def test_automatic_picks_stabilizer_for_clifford_circuits_only() -> None:
    budget = 4 * GIB
    auto = {"method": "automatic"}
    assert resolve_method(auto, 30, CLIFFORD, budget) == "stabilizer"
    assert check_task_memory(auto, 30, CLIFFORD, budget) == 16 * 900
    # One non-Clifford gate, a saved statevector or an unknown (custom) gate: statevector.
    assert resolve_method(auto, 30, CLIFFORD | {"t"}, budget) == "statevector"
    assert resolve_method({**auto, "statevector": True}, 30, CLIFFORD, budget) == "statevector"
    assert resolve_method(auto, 30, CLIFFORD | {"mygate"}, budget) == "statevector"
    assert resolve_method({}, 30, ROTATIONS, budget) == "statevector"
    with pytest.raises(LimitExceeded, match="30-qubit statevector"):
        check_task_memory(auto, 30, ROTATIONS, budget)


def test_automatic_with_noise_and_many_shots_picks_the_density_matrix() -> None:
    noisy = {"method": "automatic", "noise": {"depolarizing_1q": 0.01}, "shots": 10_000}
    assert task_memory(noisy, 10, ROTATIONS, 4 * GIB) == ("density_matrix", 16 * 4**10)
    # Clifford circuits too: Aer tries the density matrix before the stabilizer.
    assert resolve_method(noisy, 10, CLIFFORD, 4 * GIB) == "density_matrix"
    # Fewer shots than 2^n, or readout noise only: a statevector (or the stabilizer).
    assert resolve_method({**noisy, "shots": 100}, 10, ROTATIONS, 4 * GIB) == "statevector"
    assert resolve_method({**noisy, "shots": 100}, 10, CLIFFORD, 4 * GIB) == "stabilizer"
    readout = {**noisy, "noise": {"readout": 0.1}}
    assert resolve_method(readout, 10, ROTATIONS, 4 * GIB) == "statevector"
    # Over the budget Aer still picks the density matrix (and fails the run): refused.
    assert resolve_method(noisy, 13, ROTATIONS, 64 * 2**20) == "density_matrix"
    with pytest.raises(LimitExceeded, match="13-qubit density_matrix"):
        check_task_memory(noisy, 13, CLIFFORD, 64 * 2**20)


def test_named_methods_are_taken_as_named() -> None:
    mps = {"method": "matrix_product_state"}
    assert task_memory(mps, 30, ROTATIONS, 4 * GIB) == ("matrix_product_state", 16 * 512**2 * 76)
    assert resolve_method({"method": "statevector"}, 3, CLIFFORD, GIB) == "statevector"


def test_aer_max_memory_mb() -> None:
    assert aer_max_memory_mb(4 * GIB) == 4096
    assert aer_max_memory_mb(1000) == 1


# ---- counts against the result limit ----------------------------------------------------
def test_the_counts_bound_holds_every_counts_map() -> None:
    # Exact worst cases: every key distinct, and one key holding every shot.
    spread = {format(i, "020b"): 1 for i in range(1000)}
    assert counts.counts_bytes(spread) <= arrays.counts_bytes_bound(1000, 20)
    assert len(json.dumps(spread)) <= counts.counts_bytes(spread)
    assert counts.counts_bytes({}) == 0  # no measurements: nothing counted
    one = {"0" * 20: 10**6}
    assert counts.counts_bytes(one) <= arrays.counts_bytes_bound(10**6, 20)
    # Two registers put a space in each key.
    two = {f"{i:010b} {i:010b}": 1 for i in range(1000)}
    assert counts.counts_bytes(two) <= arrays.counts_bytes_bound(1000, 20)
    # Keys are bounded by 2^clbits as well as by shots.
    assert arrays.counts_bytes_bound(10**6, 2) == 4 * (3 + 7 + 6)


def test_a_million_shots_over_many_clbits_count_against_the_result_limit() -> None:
    payload = {"shots": 10**6}
    sizes = arrays.result_bytes(payload, 24, 24)
    assert sizes == {"counts": 10**6 * (47 + 7 + 6)}  # 60 MB of JSON at most
    with pytest.raises(ResultTooLarge) as info:
        arrays.check_result_size(payload, 24, 24, 16 * 1024 * 1024)
    assert info.value.detail["limit"] == "max_result_bytes" and "counts" in info.value.message
    # Under the default limit it fits; without clbits there are no counts.
    arrays.check_result_size(payload, 24, 24, Limits().max_result_bytes)
    assert arrays.result_bytes(payload, 24, 0) == {}
    # Bindings multiply it.
    sweep = {"shots": 10**5, "parameter_bindings": [{"a": 1}] * 100}
    assert arrays.result_bytes(sweep, 20, 20)["counts"] == 100 * 10**5 * (39 + 6 + 6)


def test_counts_are_checked_at_completion() -> None:
    produced = [{format(i, "016b"): 15 for i in range(4096)}] * 3
    size = 3 * counts.counts_bytes(produced[0])
    counts.check_counts_size(produced, 1000, size + 1000)
    with pytest.raises(ResultTooLarge, match="QTASKDIST_MAX_RESULT_BYTES") as info:
        counts.check_counts_size(produced, 1000, size + 999)
    assert info.value.detail["value"] == size + 1000


# ---- storage ------------------------------------------------------------------------------
def test_stored_task_quota() -> None:
    check_stored_tasks(99, 1, 100)
    check_stored_tasks(10**9, 5, 0)  # 0: no cap
    with pytest.raises(QuotaExceeded) as info:
        check_stored_tasks(99, 2, 100)
    err = info.value
    assert err.http_status == 429 and err.detail["limit"] == "stored_tasks"
    assert "QTASKDIST_MAX_STORED_TASKS" in err.message and err.detail["maximum"] == 100
    assert gc_due(86_400) and not gc_due(0)


def test_new_limits_defaults_and_environment() -> None:
    d = Limits()
    assert (d.max_stored_tasks, d.retention_s) == (100_000, 30 * 86_400)
    got = load_limits(
        {
            "QTASKDIST_MAX_TASK_MEMORY_BYTES": str(GIB),
            "QTASKDIST_MAX_STORED_TASKS": "0",
            "QTASKDIST_RETENTION_S": "0",
        }
    )
    assert (got.max_task_memory_bytes, got.max_stored_tasks, got.retention_s) == (GIB, 0, 0)
    with pytest.raises(Exception, match="QTASKDIST_RETENTION_S"):
        load_limits({"QTASKDIST_RETENTION_S": "-1"})
    with pytest.raises(Exception, match="QTASKDIST_MAX_TASK_MEMORY_BYTES"):
        load_limits({"QTASKDIST_MAX_TASK_MEMORY_BYTES": "0"})


# ---- the job process ---------------------------------------------------------------------
def test_job_memory_headroom() -> None:
    d = Limits()
    assert default_headroom_bytes(d) == d.max_task_memory_bytes + d.max_result_bytes + SLACK_BYTES
    assert headroom_bytes(d, None) == default_headroom_bytes(d)
    assert headroom_bytes(d, 64) == 64 * 1024 * 1024


@pytest.mark.parametrize(
    "exc",
    [
        PermanentJobError(
            "Aer could not run the circuit: ERROR:  [Experiment 0] Insufficient memory to run "
            "circuit circuit-47 using the statevector simulator. Required memory: 256M, max "
            "memory: 128M ERROR: Insufficient memory to run circuit circuit-47"
        ),
        PermanentJobError(
            "Aer could not run the circuit: ERROR:  [Experiment 0] Cannot allocate memory by "
            "posix_memalign ERROR: Cannot allocate memory by posix_memalign"
        ),
        MemoryError("Unable to allocate 256. MiB for an array with shape (16777216,)"),
    ],
)
def test_a_memory_failure_is_one_memory_exceeded_line(exc: BaseException) -> None:
    got = as_memory_error(exc)
    assert isinstance(got, MemoryExceeded) and not got.retryable
    assert got.message.startswith("memory_exceeded: ") and "\n" not in got.message
    assert "[Experiment" not in got.message and got.message.count("ERROR") == 0
    assert got.__cause__ is exc


def test_other_errors_stay_as_they_are() -> None:
    exc = PermanentJobError("Aer could not run the circuit: unknown instruction foo")
    assert as_memory_error(exc) is exc


def test_worker_metrics_bind_localhost_unless_told() -> None:
    args = build_parser().parse_args(["--metrics-port", "9100"])
    assert args.metrics_addr == "127.0.0.1"
    args = build_parser().parse_args(["--metrics-port", "9100", "--metrics-addr", "0.0.0.0"])
    assert args.metrics_addr == "0.0.0.0"
    assert build_parser().parse_args([]).job_memory_mb is None
    assert build_parser().parse_args(["--job-memory-mb", "64"]).job_memory_mb == 64


# ---- large counts leave the row ----------------------------------------------------------
def test_small_counts_stay_inline_and_large_ones_are_spilled(tmp_path) -> None:
    small = {"00": 510, "11": 490}
    assert counts.counts_part(small, str(tmp_path)) is small
    large = {format(i, "020b"): (i % 7) + 1 for i in range(5000)}
    ref = counts.counts_part(large, str(tmp_path))
    assert arrays.is_ref(ref) and ref["distinct"] == 5000
    assert ref["shots"] == sum(large.values())
    assert ref["top"][0] == {
        "bitstring": format(6, "020b"),
        "count": 7,
        "probability": 7 / ref["shots"],
    }
    stored = (tmp_path / ref["file"]).read_bytes()
    arr = arrays.decode([stored], ref)
    assert counts.is_counts_array(arr) and counts.from_array(arr) == large
    # The notebook side reads it back as the dict, fetched once.
    fetched: list[str] = []

    def fetch(r: dict) -> object:
        fetched.append(r["file"])
        return arrays.decode([stored], r)

    res = LazyResult({"counts": {**ref, "$array": "counts"}}, fetch)
    assert res.summary("counts")["distinct"] == 5000
    assert res["counts"] == large and res.get("counts") == large and len(fetched) == 1


def test_submit_checks_backend_runs_on_the_local_device_too() -> None:
    info = SimpleNamespace(num_qubits=30, num_clbits=30, operations=ROTATIONS)
    local = {"device_id": "local", "shots": 100, "provider_options": {"seed": 1}}
    with pytest.raises(LimitExceeded) as err:
        check_submit("backend_run", local, info, Limits())
    assert err.value.field == "payload.provider_options.method"
    assert err.value.detail["limit"] == "max_task_memory_bytes"
    mps = {**local, "provider_options": {"method": "matrix_product_state"}}
    check_submit("backend_run", mps, info, Limits())
    # A remote device's memory is not ours; its counts still count against the result limit.
    remote = {"device_id": "ionq_simulator", "shots": 10**6}
    check_submit("backend_run", remote, info, Limits())
    with pytest.raises(ResultTooLarge):
        check_submit("backend_run", remote, info, Limits(max_result_bytes=2**20))
    check_submit("c_qir_convert", {"circuit": "x"}, info, Limits(max_result_bytes=1))


def test_matrix_product_state_is_bounded_by_its_bond_dimension() -> None:
    """MPS is admitted under the default budget at the qubit limit (304 MiB at 30 qubits),
    refused when the bond dimension the operator allows needs more than the budget."""
    mps = {"method": "matrix_product_state"}
    limits = Limits()
    assert check_task_memory(mps, limits.max_qubits, ROTATIONS, limits.max_task_memory_bytes) < (
        limits.max_task_memory_bytes
    )
    with pytest.raises(LimitExceeded) as info:
        check_task_memory(mps, 30, ROTATIONS, 4 * GIB, mps_max_bond=4096)
    assert "bond dimension 4096: QTASKDIST_MPS_MAX_BOND_DIMENSION" in info.value.message
    assert info.value.detail["limit"] == "max_task_memory_bytes"
