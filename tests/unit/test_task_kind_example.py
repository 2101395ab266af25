"""The worked example of docs/task-kinds.md: a fourth task type, ``qasm_stats``, added by
its spec and its job alone (both in this file), and read by every side that reads specs.

In the product the spec goes into core/kinds.py (``register(TaskKind(...))`` beside the
others) and the job into ``worker/qtaskdist_worker/jobs/<name>.py``; here the fixture
registers it for one test and drops it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from qtaskdist_worker.jobs import handle_request
from qtaskdist_worker.units import InFlight, plan_units
from qtaskdist_worker.worker import lanes_of

from qtaskdist_jupyter.core.broker.keys import PRIORITY_STREAMS, STREAMS, TYPE_OF_STREAM
from qtaskdist_jupyter.core.broker.wire import TaskMessage, stream_for
from qtaskdist_jupyter.core.budget import check_submit
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.core.kinds import KINDS, TaskKind, register, unregister
from qtaskdist_jupyter.core.queue import TaskRow
from qtaskdist_jupyter.core.schemas import PAYLOAD_MODELS, _CircuitPayload, validate_payload

NAME = "qasm_stats"


class QasmStatsPayload(_CircuitPayload):
    """The payload: a circuit (checked like every other type's) and nothing else."""


def run_stats(request: dict[str, Any]) -> dict[str, Any]:
    """The job: one reply per task of the unit, as every pool job answers."""
    replies = {}
    for task in request["tasks"]:
        statements = [s for s in task["payload"]["circuit"].split(";") if s.strip()]
        replies[task["task_id"]] = {"ok": True, "result": {"statements": len(statements)}}
    return {"replies": replies}


QASM_STATS = TaskKind(
    name=NAME,
    stream="qasm_stats",
    payload_model=f"{__name__}:QasmStatsPayload",
    lane="pool",
    job=f"{__name__}:run_stats",
    verb="stats",
)


@pytest.fixture
def qasm_stats() -> Iterator[TaskKind]:
    register(QASM_STATS)
    yield QASM_STATS
    unregister(NAME)


@dataclass
class _Shape:
    num_qubits: int = 2
    num_clbits: int = 2
    operations: frozenset[str] = frozenset({"h", "cx"})


def test_the_broker_names_its_streams(qasm_stats: TaskKind) -> None:
    assert STREAMS[NAME] == "stream:qasm_stats"
    assert PRIORITY_STREAMS[NAME] == "stream:qasm_stats:priority"
    assert TYPE_OF_STREAM["stream:qasm_stats"] == NAME
    assert stream_for(NAME) == "stream:qasm_stats"


def test_the_schemas_check_its_payload(qasm_stats: TaskKind) -> None:
    assert PAYLOAD_MODELS[NAME] is QasmStatsPayload
    checked = validate_payload(NAME, {"circuit": "OPENQASM 2.0; qreg q[1];"}, Limits())
    assert checked == {"circuit": "OPENQASM 2.0; qreg q[1];", "circuit_format": "auto"}
    with pytest.raises(InvalidInput):
        validate_payload(NAME, {"circuit": "OPENQASM 2.0;", "shots": 5}, Limits())
    # Its rules ask for no resource checks: none is made (a simulate payload this big is
    # refused, see test_resource_limits).
    check_submit(NAME, {"circuit": "x"}, _Shape(num_qubits=60), Limits())


def test_the_worker_reads_its_lane_and_runs_its_job(qasm_stats: TaskKind) -> None:
    lanes = lanes_of(["simulate", NAME, "backend_run"])
    assert lanes["pool"][-2:] == ["stream:qasm_stats:priority", "stream:qasm_stats"]
    tasks = [_item("OPENQASM 2.0; qreg q[2]; h q[0];"), _item("OPENQASM 2.0;")]
    units = plan_units(tasks, batch_size=64)
    assert sorted(len(u) for u in units) == [1, 1]  # no shared Aer calls: a unit each
    request = {"kind": NAME, "tasks": [{"task_id": "a", "payload": tasks[0].row.payload}]}
    assert handle_request(request) == {"replies": {"a": {"ok": True, "result": {"statements": 3}}}}


def test_it_is_gone_once_dropped() -> None:
    assert NAME not in KINDS and NAME not in STREAMS and NAME not in PAYLOAD_MODELS
    with pytest.raises(ValueError, match="unknown request kind"):
        handle_request({"kind": NAME, "tasks": []})


def test_a_taken_name_or_verb_is_refused(qasm_stats: TaskKind) -> None:
    with pytest.raises(ValueError, match="taken"):
        register(QASM_STATS)
    with pytest.raises(ValueError, match="taken"):
        register(TaskKind(**{**vars(QASM_STATS), "name": "other", "verb": "simulate"}))


def _item(circuit: str) -> InFlight:
    tid = uuid.uuid4()
    row = TaskRow(tid, NAME, "running", "alice", 1, payload={"circuit": circuit})
    return InFlight("stream:qasm_stats", "1-0", TaskMessage(tid, NAME, 1), row)
