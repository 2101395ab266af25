"""A batch's circuits are parsed in chunks by the parse children side by side
(ParsePool.inspect_many), with each circuit's own deadline, and a refused batch names the
task a task-by-task check would name: the first, in order, that has an error."""

from __future__ import annotations

import psycopg
import pytest

from qtaskdist_jupyter.core.circuits import codec, sandbox
from qtaskdist_jupyter.core.circuits.sandbox import ParsePool
from qtaskdist_jupyter.core.config import Limits, libpq_url
from qtaskdist_jupyter.core.errors import CircuitError, InvalidInput
from tests.fixtures.server import simulate_spec

H2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
# Within every counted limit, but seconds to parse (test_hostile_parse uses it too).
SLOW = H2 + "qreg q[30];\ncreg c[30];\n"
SLOW += "".join(f"cx q[{i % 29}],q[{i % 29 + 1}];\n" for i in range(60_000))
BAD = H2 + "qreg q[2];\nh q[5];\n"  # qiskit refuses the index: a refusal, not a break


def point(i: int) -> str:
    return (
        H2 + f"qreg q[2];\ncreg c[2];\nrx({0.001 * i:.4f}) q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
    )


def _rows(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


def test_a_batch_is_answered_in_order_as_the_codec_answers_each() -> None:
    limits = Limits()
    items = [(point(i), "auto") for i in range(3 * sandbox.CHUNK + 5)]
    bad_at = [1, sandbox.CHUNK, 2 * sandbox.CHUNK + 7]
    for k in bad_at:
        items[k] = (BAD, "qasm2")
    items[9] = ("UUlTS0lUnot base64!", "auto")  # refused by the server's own precheck
    pool = ParsePool(2, limits.parse_memory_bytes, limits.parse_time_s)
    try:
        got = pool.inspect_many(items, limits)
    finally:
        pool.close()
    assert len(got) == len(items)
    for k, (source, fmt) in enumerate(items):
        try:
            want = codec.inspect_circuit(source, fmt, limits=limits)  # type: ignore[arg-type]
        except InvalidInput as exc:
            assert type(got[k]) is type(exc) and got[k].message == exc.message, (k, got[k])
        else:
            assert got[k] == want, k
    assert sorted(k for k, g in enumerate(got) if isinstance(g, InvalidInput)) == [
        *bad_at[:1],
        9,
        *bad_at[1:],
    ]


def test_a_circuit_past_its_deadline_is_refused_and_nothing_after_it_in_its_chunk_is_parsed() -> (
    None
):
    limits = Limits()
    n = 2 * sandbox.CHUNK
    slow_at = sandbox.CHUNK + 6  # in the second chunk
    items = [(point(i), "auto") for i in range(n)]
    items[slow_at] = (SLOW, "qasm2")
    pool = ParsePool(1, limits.parse_memory_bytes, 1.0)
    try:
        got = pool.inspect_many(items, limits)
        after = pool.inspect(point(0), "auto", limits)  # a fresh child took its place
    finally:
        pool.close()
    assert all(isinstance(g, codec.CircuitInfo) for g in got[:slow_at])
    assert isinstance(got[slow_at], CircuitError) and got[slow_at].detail["limit"] == "parse"
    assert "QTASKDIST_PARSE_TIME_S" in got[slow_at].message
    assert got[slow_at + 1 :] == [None] * (n - slow_at - 1)
    assert after.num_qubits == 2


async def test_a_refused_batch_names_its_first_task_with_an_error(api, database_url) -> None:
    """Circuit refusals found by the parse children and payload errors found before them
    are reported in task order, as a task-by-task check would."""
    n = 3 * sandbox.CHUNK + 10
    specs = [simulate_spec(point(i)) for i in range(n)]
    specs[150]["payload"]["circuit"] = BAD
    specs[70]["payload"]["shots"] = -1
    code, err = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 422 and err["index"] == 70 and err["field"] == "tasks.70.payload.shots", err

    specs[70]["payload"]["shots"] = 100
    specs[100]["payload"]["circuit"] = BAD
    specs[120]["payload"]["shots"] = -1
    code, err = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 422 and err["index"] == 100 and err["field"].startswith("tasks.100."), err
    assert _rows(database_url) == 0

    specs[100]["payload"]["circuit"] = specs[150]["payload"]["circuit"] = point(1)
    specs[120]["payload"]["shots"] = 100
    code, out = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 201 and out["count"] == n, out
    assert _rows(database_url) == n


@pytest.mark.parametrize(
    "qtd_config", [{"QtaskdistApp": {"limits": {"parse_time_s": 1.0, "parse_workers": 2}}}]
)
async def test_a_batch_with_a_circuit_past_its_deadline_is_refused_whole(api, database_url) -> None:
    specs = [simulate_spec(point(i)) for i in range(sandbox.CHUNK + 20)]
    specs[sandbox.CHUNK + 3]["payload"]["circuit"] = SLOW
    code, err = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 422 and err["limit"] == "parse" and err["index"] == sandbox.CHUNK + 3, err
    specs[sandbox.CHUNK + 3]["payload"]["circuit"] = point(0)
    code, out = await api("POST", "tasks/batch", body={"tasks": specs})
    assert code == 201 and out["count"] == len(specs), out
    assert _rows(database_url) == len(specs)
