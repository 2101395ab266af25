"""Every hostile case of issue 23 against ONE real ``jupyter server`` process, measured.

H1, H2, M1, M5, L6, L7 (parsing), H3 at submit and M4 (the memory budget, counts, big
bodies, a page's bytes), M3 (quotas under real parallel requests, large bodies in flight),
M2 (the events cursor), L1 and L2 (no side channels) and the refusal contract: each case
is a user of its own on the same server (tests/fixtures/hostile.py). The last test
asserts over the whole suite: the server's peak RSS grew by less than 200 MB, and no
request took more than 2 s of the server's CPU. Cases that need other limits than this
server's (the parse sandbox, the stored-task cap, a worker's limits) are in
test_hostile_parse.py and test_hostile_resources.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from qtaskdist_server.api.cursors import CURSOR_TOKEN, CursorSealer, cursor_key

from qtaskdist_jupyter.core.broker.keys import PRIORITY_STREAMS, STREAMS
from qtaskdist_jupyter.kernel.client import Client
from tests.fixtures.backing import database_url_for, redis_url_for
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.hostile import (
    ADMIN,
    CURSOR_SECRET,
    MAX_ACTIVE_TASKS,
    Hostile,
    start_hostile_server,
    warm,
)
from tests.fixtures.hostile_inputs import (
    H2,
    H3,
    HOSTILE,
    check_refusal,
    ghz_qasm,
    patched_definition,
    patched_if_body,
    qpy_bytes,
    rotations_qasm,
    sim,
)
from tests.fixtures.server import simulate_spec
from tests.fixtures.services import _free_redis_db, admin

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures the server through /proc"
)
GIB = 1024**3
BROKEN = "OPENQASM 2.0;\nqreg q[1];\nnot_a_gate q[0];\n"


@pytest.fixture(scope="module")
def hostile(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    name = f"qtd_hostile_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    try:
        with _free_redis_db() as db:
            redis.Redis.from_url(redis_url_for(db)).flushdb()
            tmp = tmp_path_factory.mktemp("hostile")
            got = start_hostile_server(tmp, database_url_for(name), redis_url_for(db))
            try:
                warm(got, BELL_QASM2)
                yield got
            finally:
                got.server.stop()
                redis.Redis.from_url(redis_url_for(db)).flushdb()
    finally:
        with admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---- H1, M1, M5, H2: the parsing side -----------------------------------------------------
async def test_physical_qubits_are_counted_by_the_scan(hostile: Hostile) -> None:
    """H1: ``h $n;`` is refused from the scan, in milliseconds, for any n over the limit."""
    api = hostile.api("h1")
    for name in ("physical_1e8", "physical_3e6"):
        started = time.monotonic()
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        check_refusal(name, code, err)
        assert time.monotonic() - started < 1.0, name
    # A program on physical qubits within the limit still runs.
    code, ok = await api("POST", "tasks", body=sim(H3 + "h $2;\ncx $0, $1;\n"))
    assert code == 201, ok
    assert hostile.rows("h1") == 1


async def test_numbers_are_ascii_and_bounded_before_conversion(hostile: Hostile) -> None:
    """M1: superscript digits and a 5,000-digit size are a 422 naming the field, not a 500."""
    api = hostile.api("m1")
    for name in ("superscript_size", "superscript_const", "digits_5000"):
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        check_refusal(name, code, err)
    code, ok = await api("POST", "tasks", body=sim(H2 + "qreg q[3];\nh q;\n"))
    assert code == 201, ok
    assert hostile.rows("m1") == 1


async def test_loops_count_as_unrolled(hostile: Hostile) -> None:
    """M5: a for loop counts its body times its range; nested loops multiply; a range the
    scan cannot bound is refused; a while loop's body counts once."""
    api = hostile.api("m5")
    for name in ("loop_1e9", "nested_loops", "loop_unbounded"):
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        check_refusal(name, code, err)
    small = H3 + "qubit q;\nbit c;\nfor int i in [0:2:10] { x q; }\n"
    small += "c = measure q;\nwhile (c) { x q; c = measure q; }\n"
    code, ok = await api("POST", "tasks", body=sim(small))
    assert code == 201, ok
    assert hostile.rows("m5") == 1


async def test_nested_qpy_headers_are_walked_before_loading(hostile: Hostile) -> None:
    """H2: an if-body or a definition claiming 10^6 (or 2^32 - 1) qubits is refused by the
    header walk, in milliseconds; the unpatched circuits are accepted."""
    api = hostile.api("h2")
    for name in ("qpy_if_body_1e6", "qpy_if_body_max", "qpy_definition_1e6"):
        started = time.monotonic()
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        check_refusal(name, code, err)
        assert time.monotonic() - started < 1.0, name
    for ok_circuit in (patched_if_body(1), patched_definition(3)):
        code, ok = await api("POST", "tasks", body=sim(ok_circuit))
        assert code == 201, ok
    assert hostile.rows("h2") == 2


# ---- L6, L7: smaller checks at submit -----------------------------------------------------
async def test_binding_names_are_checked_against_the_circuit(hostile: Hostile) -> None:
    """L6: unknown and missing parameter names are a 422 that names them."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    api = hostile.api("l6")
    theta = Parameter("theta")
    qc = QuantumCircuit(1)
    qc.rx(theta, 0)
    qc.measure_all()
    circuit = base64.b64encode(qpy_bytes(qc)).decode()
    code, err = await api(
        "POST", "tasks", body=sim(circuit, parameter_bindings=[{"theta": 1.0}, {"phi": 2.0}])
    )
    assert code == 422 and err["field"] == "payload.parameter_bindings.1", err
    assert "unknown ['phi']" in err["detail"] and "missing ['theta']" in err["detail"], err
    convert = {
        "task_type": "c_qir_convert",
        "payload": {"circuit": circuit, "parameter_bindings": {"phi": 1.0}},
    }
    code, err = await api("POST", "tasks", body=convert)
    assert code == 422 and err["field"] == "payload.parameter_bindings", err
    assert "unknown ['phi']" in err["detail"], err
    code, ok = await api("POST", "tasks", body=sim(circuit, parameter_bindings=[{"theta": 1.0}]))
    assert code == 201, ok
    assert hostile.rows("l6") == 1


async def test_provider_options_bounded_and_parser_errors_one_clean_line(
    hostile: Hostile,
) -> None:
    """L7: a 900 KB option value and 33 keys are refused; a truncated QPY's error is one
    line without qiskit's Rust backtrace banner, box-drawing characters or source paths."""
    api = hostile.api("l7")
    for name in ("provider_option_900k", "qpy_truncated"):
        code, err = await api("POST", "tasks", body=HOSTILE[name][0])
        check_refusal(name, code, err)
    many = {"task_type": "backend_run", "payload": {"circuit": BELL_QASM2, "device_id": "local"}}
    many["payload"]["provider_options"] = {f"k{i}": i for i in range(33)}
    code, err = await api("POST", "tasks", body=many)
    assert code == 422 and err["field"] == "payload.provider_options", err
    assert "33 keys; the limit is 32" in err["detail"], err
    assert hostile.rows("l7") == 0


# ---- H3 and M4 at submit: the memory budget and the counts bound -------------------------
async def test_a_30_qubit_statevector_is_refused_at_submit_by_default(hostile: Hostile) -> None:
    api = hostile.api("h3")
    for method in ("statevector", "automatic"):
        spec = simulate_spec(rotations_qasm(30), payload={"method": method})
        code, body = await api("POST", "tasks", body=spec)
        assert code == 422, body
        assert body["error"] == "limit_exceeded" and body["limit"] == "max_task_memory_bytes"
        assert body["field"] == "payload.method" and body["maximum"] == 4 * GIB
        assert "16.0 GiB" in body["detail"] and "QTASKDIST_MAX_TASK_MEMORY_BYTES" in body["detail"]
    spec = simulate_spec(rotations_qasm(16), payload={"method": "density_matrix"})
    code, body = await api("POST", "tasks/batch", body={"tasks": [simulate_spec(BELL_QASM2), spec]})
    assert code == 422 and body["field"] == "tasks.1.payload.method", body
    assert "16-qubit density_matrix" in body["detail"]
    # backend_run's local device runs Aer in the worker's own process: the same budget.
    payload = {"circuit": rotations_qasm(30), "device_id": "local", "shots": 10}
    code, body = await api("POST", "tasks", body={"task_type": "backend_run", "payload": payload})
    assert code == 422 and body["field"] == "payload.provider_options.method", body
    assert hostile.rows("h3") == 0  # nothing written
    # A 30-qubit Clifford circuit runs on the stabilizer method: admitted.
    code, body = await api("POST", "tasks", body=simulate_spec(ghz_qasm(30)))
    assert code == 201, body


async def test_a_million_shot_counts_bound_is_refused_at_submit(hostile: Hostile) -> None:
    """M4: counts count against the result limit (this server's: 16 MiB)."""
    api = hostile.api("m4counts")
    spec = simulate_spec(
        "\n".join(["OPENQASM 2.0;", 'include "qelib1.inc";', "qreg q[24];", "creg c[24];"])
        + "\n"
        + "".join(f"h q[{i}];\n" for i in range(24))
        + "measure q -> c;\n",
        shots=10**6,
    )
    code, body = await api("POST", "tasks", body=spec)
    assert code == 422, body
    assert body["error"] == "result_too_large" and body["limit"] == "max_result_bytes"
    assert "counts" in body["detail"] and "16.0 MiB" in body["detail"]
    assert hostile.rows("m4counts") == 0
    # Few clbits bound few keys: admitted.
    code, body = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, shots=10**6))
    assert code == 201, body


# ---- M3: quotas under real parallel requests ----------------------------------------------
async def test_concurrent_batches_never_pass_the_active_cap(hostile: Hostile) -> None:
    api = hostile.api("m3batches")
    spec = {"tasks": [simulate_spec(BELL_QASM2) for _ in range(10)]}
    async with hostile.client("m3batches") as client:
        got = await asyncio.gather(*(api.post(client, "tasks/batch", spec) for _ in range(20)))
    codes = sorted(r.status_code for r in got)
    assert codes == [201] * 10 + [429] * 10, codes
    refused = next(r for r in got if r.status_code == 429).json()
    assert refused["limit"] == "active_tasks" and refused["maximum"] == MAX_ACTIVE_TASKS
    assert int(next(r for r in got if r.status_code == 429).headers["Retry-After"]) > 0
    assert hostile.active("m3batches") == MAX_ACTIVE_TASKS


async def test_parallel_single_submits_keep_the_priority_bound(hostile: Hostile) -> None:
    api = hostile.api("m3lane")
    spec = simulate_spec(BELL_QASM2, enqueue=True)
    async with hostile.client("m3lane") as client:
        got = await asyncio.gather(*(api.post(client, "tasks", spec) for _ in range(40)))
    assert [r.status_code for r in got] == [201] * 40
    ours = {r.json()["task_id"] for r in got}
    r = redis.Redis.from_url(hostile.redis_url, decode_responses=True)

    def in_stream(name: str) -> int:
        return sum(json.loads(f["m"])["task_id"] in ours for _id, f in r.xrange(name))

    lane, seed = PRIORITY_STREAMS["simulate"], STREAMS["simulate"]
    assert (in_stream(lane), in_stream(seed)) == (8, 32)
    r.close()


async def _hanging_post(
    hostile: Hostile, user: str, size: int, path: str = "tasks/batch", first: bytes = b'{"tasks": ['
) -> Any:
    """A POST (a batch) whose headers and ``first`` bytes are sent, the rest held back.
    Where the server answers from the headers alone, send no ``first`` bytes: it closes
    the connection after its answer, and unread bytes would turn that close into a reset
    that can reach us before the answer's body (ConnectionResetError)."""
    port = hostile.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /qtaskdist/api/{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: token {hostile.token(user)}\r\n"
        f"Content-Length: {size}\r\n\r\n".encode()
    )
    writer.write(first)
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    code = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    return code, json.loads(await asyncio.wait_for(reader.readexactly(length), 10))


async def test_the_quota_is_checked_before_the_circuits_and_before_a_big_body(
    hostile: Hostile,
) -> None:
    """An owner at the cap: circuits that would fail their check are refused by the count
    alone, and M4's 63 MB batch body is refused from its headers, before it is read."""
    api = hostile.api("atcap")
    full = {"tasks": [simulate_spec(BELL_QASM2) for _ in range(MAX_ACTIVE_TASKS)]}
    code, made = await api("POST", "tasks/batch", body=full)
    assert code == 201 and made["count"] == MAX_ACTIVE_TASKS, made
    code, err = await api("POST", "tasks", body=simulate_spec(BROKEN))
    assert code == 429 and err["limit"] == "active_tasks", err
    batch = {"tasks": [simulate_spec(BROKEN) for _ in range(5)]}
    code, err = await api("POST", "tasks/batch", body=batch)
    assert code == 429 and err["limit"] == "active_tasks", err
    assert err["value"] == MAX_ACTIVE_TASKS + 5, err
    for size in (63 * 10**6, 50_000):
        with hostile.meter.request("atcap POST tasks/batch (held body)"):
            reader, writer = await _hanging_post(hostile, "atcap", size, first=b"")
            code, err = await _answer(reader)  # the body is never sent: the headers decide
        assert code == 429 and err["limit"] == "active_tasks", err
        writer.close()
    # Past QtaskdistApp.max_batch_bytes (64 MiB): 413 before anything else.
    with hostile.meter.request("atcap POST tasks/batch (65 MB declared)"):
        reader, writer = await _hanging_post(hostile, "atcap", 65 * 2**20, first=b"")
        code, err = await _answer(reader)
    assert code == 413 and err["limit"] == "body_bytes", err
    writer.close()
    assert hostile.active("atcap") == MAX_ACTIVE_TASKS


async def test_a_63_mb_batch_over_the_quota_is_refused_before_its_tasks_are_checked(
    hostile: Hostile,
) -> None:
    """M4 from an owner under the cap: 20,000 tasks (62 MB) are counted from the parsed
    JSON, before any is validated; the suite's RSS bound holds over it."""
    api = hostile.api("bigbody")
    padding = "".join(f"// line {i:05d} {'.' * 60}\n" for i in range(40))
    spec = simulate_spec(BELL_QASM2 + padding)
    raw = json.dumps({"tasks": [spec] * 20_000}).encode()
    assert 60 * 10**6 < len(raw) < 64 * 2**20
    code, err = await api("POST", "tasks/batch", raw=raw)
    assert code == 429 and (err["field"], err["limit"]) == ("tasks", "active_tasks"), err
    assert err["value"] == 20_000 and hostile.rows("bigbody") == 0


async def test_large_bodies_in_flight_are_bounded_per_owner(hostile: Hostile) -> None:
    api, other = hostile.api("large"), hostile.api("large_other")
    spec = {"tasks": [simulate_spec(BELL_QASM2, name="x" * 250) for _ in range(20)]}
    assert len(json.dumps(spec)) > 8000
    reader, writer = await _hanging_post(hostile, "large", 50_000)
    await asyncio.sleep(0.3)  # the server has taken the slot
    code, err = await api("POST", "tasks/batch", body=spec)
    assert code == 429 and err["limit"] == "large_bodies" and err["maximum"] == 1, err
    # Small bodies and other owners are not held up.
    assert (await api("POST", "tasks", body=simulate_spec(BELL_QASM2)))[0] == 201
    assert (await other("POST", "tasks/batch", body=spec))[0] == 201
    writer.close()  # the slot goes with the connection
    await asyncio.sleep(0.3)
    code, made = await api("POST", "tasks/batch", body=spec)
    assert code == 201 and made["count"] == 20, made


async def test_chunked_and_unauthenticated_large_bodies(hostile: Hostile) -> None:
    held = await _hanging_post(hostile, "chunked", 50_000)
    await asyncio.sleep(0.3)
    # A chunked body has no Content-Length: it is counted once it grows past the size.
    port = hostile.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"tasks": [simulate_spec(BELL_QASM2) for _ in range(40)]}).encode()
    assert len(body) > 8000
    writer.write(
        f"POST /qtaskdist/api/tasks/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: token {hostile.token('chunked')}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    with hostile.meter.request("chunked POST tasks/batch (chunked)"):
        for i in range(0, len(body), 1000):
            piece = body[i : i + 1000]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        code, err = await _answer(reader)
    assert code == 429 and err["limit"] == "large_bodies", err
    writer.close()
    # Nobody to count it against: 403 from the headers (jupyter_server), before the body.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /qtaskdist/api/tasks/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Authorization: token nobody\r\n"
        "Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n".encode()
    )
    await writer.drain()
    code, err = await _answer(reader)
    assert code == 403, err
    writer.close()
    held[1].close()
    assert hostile.rows("chunked") == 0


# ---- M4: a page has a byte bound ----------------------------------------------------------
async def test_a_page_of_results_has_a_byte_bound(hostile: Hostile) -> None:
    api = hostile.api("pages")
    ids = []
    for _ in range(3):
        ids.append((await api("POST", "tasks", body=simulate_spec(BELL_QASM2)))[1]["task_id"])
    counts = {format(i, "012b"): i for i in range(150)}  # about 3 KB as JSON
    for tid in ids:
        hostile.sql(
            "UPDATE tasks SET status = 'completed', result = %s WHERE task_id = %s",
            (json.dumps({"counts": counts}), tid),
        )
    code, err = await api("GET", "tasks", params={"include": "result", "limit": "3"})
    assert code == 422 and err["field"] == "limit" and err["limit"] == "page_bytes", err
    assert err["maximum"] == 1 and err["max_page_bytes"] == 5000, err
    code, page = await api("GET", "tasks", params={"include": "result", "limit": "1"})
    assert code == 200 and page["tasks"][0]["result"]["counts"] == counts
    # Without the results the page is small, whatever the limit.
    code, page = await api("GET", "tasks", params={"limit": "3"})
    assert code == 200 and len(page["tasks"]) == 3
    # The notebook client pages on with the limit the server names.
    client = Client(hostile.server.url, hostile.token("pages"))
    with hostile.meter.request("pages client.tasks(include=result)"):
        rows = await asyncio.to_thread(client.tasks, include=("result",), limit=3)
    assert sorted(r["task_id"] for r in rows) == sorted(ids) and rows[2]["result"]["counts"]


async def test_a_page_counts_every_field_it_sends(hostile: Hostile) -> None:
    """Errors and meta_data count against max_page_bytes (5000 here) like results do."""
    api = hostile.api("pagemeta")
    ids = [
        (await api("POST", "tasks", body=simulate_spec(BELL_QASM2)))[1]["task_id"] for _ in range(3)
    ]
    attempts = json.dumps({"attempts": [{"attempt": 1, "error": "m" * 1500}]})
    for tid in ids:
        hostile.sql(
            "UPDATE tasks SET status = 'failed', error = %s, "
            "meta_data = meta_data || %s::jsonb WHERE task_id = %s",
            ("e" * 1500, attempts, tid),
        )
    code, err = await api("GET", "tasks", params={"limit": "3"})
    assert code == 422 and err["field"] == "limit" and err["limit"] == "page_bytes", err
    assert err["maximum"] == 1 and err["max_page_bytes"] == 5000, err
    code, page = await api("GET", "tasks", params={"limit": "3", "fields": "error"})
    assert code == 200 and len(page["tasks"]) == 3, page  # 3 x 1.5 KB fit in 5000
    code, err = await api("GET", "tasks", params={"limit": "3", "fields": "error,meta_data"})
    assert code == 422 and err["maximum"] == 1, err
    code, page = await api("GET", "tasks", params={"limit": "1"})
    assert code == 200 and page["tasks"][0]["error"] == "e" * 1500, page
    # Fields of a bounded size only: never measured, never refused.
    code, page = await api("GET", "tasks", params={"limit": "3", "fields": "status,name"})
    assert code == 200 and len(page["tasks"]) == 3, page


# ---- M2: the events cursor ----------------------------------------------------------------
async def test_events_answers_look_the_same_with_or_without_others_events(
    hostile: Hostile,
) -> None:
    alice, bob = hostile.api("ev_alice"), hostile.api("ev_bob")

    async def own_event_id() -> str:
        code, start = await bob("GET", "events", params={"timeout_s": "0"})
        await bob("POST", "tasks", body=simulate_spec(BELL_QASM2))
        code, got = await bob("GET", "events", params={"after": start["cursor"], "timeout_s": "5"})
        return str(got["events"][-1]["id"])

    async def poll(after: str) -> dict[str, Any]:
        code, got = await bob("GET", "events", params={"after": after, "timeout_s": "0"})
        assert code == 200 and got["events"] == [], got
        assert CURSOR_TOKEN.fullmatch(got["cursor"]) and got["cursor"] != after, got
        return dict(got)

    # After an id that alice's event follows, and after one that nothing follows.
    followed = await own_event_id()
    await alice("POST", "tasks", body=simulate_spec(BELL_QASM2))
    answers = [await poll(followed)]
    answers.append(await poll(await own_event_id()))
    assert [sorted(a) for a in answers] == [["cursor", "events"]] * 2
    # Both still resume where they read up to: bob's events after it, none of alice's.
    code, mine = await bob("POST", "tasks", body=simulate_spec(BELL_QASM2))
    resumed = []
    for a in answers:
        code, got = await bob("GET", "events", params={"after": a["cursor"], "timeout_s": "5"})
        resumed.append([e["task_id"] for e in got["events"]])
    assert len(resumed[0]) == 2 and resumed[0][1] == mine["task_id"], resumed
    assert resumed[1] == [mine["task_id"]], resumed


async def test_events_cursors_are_sealed_for_their_owner_and_kept_nowhere(
    hostile: Hostile,
) -> None:
    """Another user's cursor and a changed cursor are a 422 naming ``after``; the server
    keeps no cursor: it opens one it never issued, sealed with its secret."""
    alice, bob = hostile.api("cur_alice"), hostile.api("cur_bob")
    code, got = await alice("GET", "events", params={"timeout_s": "0"})
    token = got["cursor"]
    code, err = await bob("GET", "events", params={"after": token, "timeout_s": "0"})
    assert code == 422 and err["field"] == "after", err
    # The notebook client, handed a cursor the server refuses, polls again from now.
    client = Client(hostile.server.url, hostile.token("cur_bob"))
    with hostile.meter.request("cur_bob client.events(after=alice's cursor)"):
        got = await asyncio.to_thread(client.events, after=token, timeout_s=0)
    assert got["events"] == [] and CURSOR_TOKEN.fullmatch(got["cursor"]), got
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    code, err = await alice("GET", "events", params={"after": changed, "timeout_s": "0"})
    assert code == 422 and err["field"] == "after", err
    sealer = CursorSealer(cursor_key(CURSOR_SECRET))
    position = sealer.open("cur_alice", token)
    code, made = await alice("POST", "tasks", body=simulate_spec(BELL_QASM2))
    fresh = sealer.seal("cur_alice", position)  # never seen by the server
    code, got = await alice("GET", "events", params={"after": fresh, "timeout_s": "5"})
    assert code == 200 and [e["task_id"] for e in got["events"]] == [made["task_id"]], got


# ---- L1: operators ------------------------------------------------------------------------
async def test_metrics_and_the_fleet_are_for_configured_operators_only(hostile: Hostile) -> None:
    r = redis.Redis.from_url(hostile.redis_url)
    r.hset("qtaskdist:workers", "w1", f'{{"host": "h1", "pid": 11, "ts": {time.time()}}}')
    r.close()
    user = hostile.api("l1")
    code, err = await user("GET", "metrics")
    assert code == 403 and err["error"] == "operator_only", (code, err)
    code, health = await user("GET", "health")
    assert code == 200 and set(health) == {"database", "redis", "queue"}, health
    operator = hostile.api(ADMIN)
    code, text = await operator("GET", "metrics")
    assert code == 200 and "qtaskdist_workers_known 1.0" in text, text
    code, health = await operator("GET", "health")
    assert health["workers"][0]["host"] == "h1"


# ---- L2: no worker hosts or pids for users ------------------------------------------------
def _ran_on_node7(hostile: Hostile, task_id: str) -> None:
    """The row as a worker named node7-4242 on host node7 leaves a failed attempt."""
    error = "simulation failed on node7: process 4242 ran out of memory (pid=4242)"
    attempt = {"attempt": 1, "worker": "node7-4242", "outcome": "failed", "error": error}
    meta = {"worker": "node7-4242", "host": "node7", "attempts": [attempt], "run_time_s": 1.0}
    hostile.sql(
        "UPDATE tasks SET status = 'failed', worker = %s, error = %s, "
        "meta_data = meta_data || %s::jsonb WHERE task_id = %s",
        ("node7-4242", error, json.dumps(meta), task_id),
    )


@pytest.mark.parametrize("user", ["l2", ADMIN])
async def test_users_do_not_see_worker_hosts_or_pids(hostile: Hostile, user: str) -> None:
    api = hostile.api(user)
    code, t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, labels={"k": 1}))
    tid = t["task_id"]
    _ran_on_node7(hostile, tid)
    code, one = await api("GET", f"tasks/{tid}")
    code, page = await api("GET", "tasks", params={"fields": "error,worker,meta_data"})
    seen = json.dumps([one, page])
    if user == ADMIN:
        assert one["worker"] == "node7-4242" and one["meta_data"]["host"] == "node7"
        return
    assert "node7" not in seen and "4242" not in seen, seen
    assert re.fullmatch(r"worker-[0-9a-f]{10}", one["worker"]), one
    assert page["tasks"][0]["worker"] == one["worker"] == one["meta_data"]["worker"]
    assert one["meta_data"]["attempts"][0]["worker"] == one["worker"]
    assert "host" not in one["meta_data"] and one["labels"] == {"k": 1}
    assert one["error"].startswith("simulation failed on [redacted]: process [redacted]")
    assert one["meta_data"]["run_time_s"] == 1.0 and one["status"] == "failed"


# ---- every refusal: a 4xx naming the field and the limit, and no row --------------------
def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _refusals() -> dict[str, tuple[str, dict[str, Any], int, str, str]]:
    """name: (path, body, status, field, limit): one request for each kind of refusal
    over a limit that a body or a count can reach (the quotas are below)."""
    wide = H2 + "qreg q[31];\nh q;\n"
    return {
        "qubits": ("tasks", sim(wide), 422, "circuit", "qubits"),
        "instructions": ("tasks", HOSTILE["loop_1e9"][0], 422, "circuit", "instructions"),
        "digits": ("tasks", HOSTILE["digits_5000"][0], 422, "circuit", "integer_digits"),
        "qpy_nested": ("tasks", HOSTILE["qpy_if_body_1e6"][0], 422, "circuit", "qubits"),
        "shots": ("tasks", simulate_spec(BELL_QASM2, shots=10**7), 422, "payload.shots", "shots"),
        "time_limit": (
            "tasks",
            sim(BELL_QASM2, time_limit_s=10**5),
            422,
            "payload.time_limit_s",
            "max_time_limit_s",
        ),
        "payload_bytes": (
            "tasks",
            sim("x" * 1_000_001),
            413,
            "payload.circuit",
            "payload_bytes",
        ),
        "name": ("tasks", simulate_spec(BELL_QASM2, name="x" * 300), 422, "name", "max_length"),
        "tags": ("tasks", simulate_spec(BELL_QASM2, tags=["t"] * 33), 422, "tags", "max_length"),
        "label_bytes": (
            "tasks",
            simulate_spec(BELL_QASM2, labels={"a": "x" * 17_000}),
            422,
            "labels",
            "label_max_bytes",
        ),
        "label_depth": (
            "tasks",
            simulate_spec(BELL_QASM2, labels=_nested(10)),
            422,
            "labels.a.a.a.a.a.a.a.a",
            "depth",
        ),
        "body_depth": ("tasks", _nested(40), 422, "a." * 31 + "a", "depth"),
        "options": (
            "tasks",
            HOSTILE["provider_option_900k"][0],
            422,
            "payload.provider_options",
            "provider_option_max_chars",
        ),
        "memory": (
            "tasks",
            simulate_spec(rotations_qasm(30), payload={"method": "statevector"}),
            422,
            "payload.method",
            "max_task_memory_bytes",
        ),
        "result_bytes": (
            "tasks",
            simulate_spec(rotations_qasm(24), shots=10**6),
            422,
            "payload",
            "max_result_bytes",
        ),
        "batch_member": (
            "tasks/batch",
            {"tasks": [simulate_spec(BELL_QASM2), sim(wide)]},
            422,
            "tasks.1.circuit",
            "qubits",
        ),
    }


async def test_every_refusal_names_its_field_and_limit_and_writes_no_row(
    hostile: Hostile,
) -> None:
    api = hostile.api("refused")
    for name, (path, body, status, field, limit) in _refusals().items():
        code, err = await api("POST", path, body=body)
        assert code == status, (name, code, err)
        assert err["field"] == field and err["limit"] == limit, (name, err)
        assert "maximum" in err, (name, err)
    # A body past its route's limit: 413 from Content-Length, before it is read.
    with hostile.meter.request("refused POST tasks (3 MB declared)"):
        # Headers only: answered from them, body bytes would turn its close into a reset.
        reader, writer = await _hanging_post(hostile, "refused", 3 * 10**6, path="tasks", first=b"")
        code, err = await _answer(reader)
    writer.close()
    assert code == 413 and (err["field"], err["limit"]) == ("body", "body_bytes"), err
    # Query parameters over their bounds.
    for params, field, limit in (
        ({"limit": "5000"}, "limit", "max_value"),
        ({"timeout_s": "31"}, "timeout_s", "events_max_timeout_s"),
    ):
        path = "events" if "timeout_s" in params else "tasks"
        code, err = await api("GET", path, params=params)
        assert code == 422 and (err["field"], err["limit"]) == (field, limit), err
    assert hostile.rows("refused") == 0


async def test_every_quota_refusal_names_its_field_and_limit(hostile: Hostile) -> None:
    """The 429s: active tasks, stored tasks (this server's cap: 150), large bodies in
    flight and open events requests; each names the field and the limit, and a refused
    submission writes no row."""
    api = hostile.api("quotas")
    full = {"tasks": [simulate_spec(BELL_QASM2) for _ in range(MAX_ACTIVE_TASKS)]}
    assert (await api("POST", "tasks/batch", body=full))[0] == 201
    code, err = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 429 and (err["field"], err["limit"]) == ("tasks", "active_tasks"), err
    # Finished tasks free the active cap but still count as stored.
    hostile.sql("UPDATE tasks SET status = 'cancelled' WHERE owner = 'quotas'")
    more = {"tasks": [simulate_spec(BELL_QASM2) for _ in range(51)]}
    code, err = await api("POST", "tasks/batch", body=more)
    assert code == 429 and (err["field"], err["limit"]) == ("tasks", "stored_tasks"), err
    assert err["maximum"] == 150 and hostile.rows("quotas") == MAX_ACTIVE_TASKS
    # A large body in flight: the next one is refused.
    reader, writer = await _hanging_post(hostile, "quotas", 50_000)
    await asyncio.sleep(0.3)
    code, err = await api("POST", "tasks/batch", body=more)
    assert code == 429 and (err["field"], err["limit"]) == ("body", "large_bodies"), err
    writer.close()
    # Open events requests: four wait, the fifth is refused.
    waiting = [
        asyncio.ensure_future(api("GET", "events", params={"timeout_s": "3"})) for _ in range(4)
    ]
    await asyncio.sleep(1.0)
    code, err = await api("GET", "events", params={"timeout_s": "0"})
    assert code == 429 and (err["field"], err["limit"]) == ("request", "event_streams"), err
    assert all(c == 200 for c, _ in await asyncio.gather(*waiting))
    assert hostile.rows("quotas") == MAX_ACTIVE_TASKS


# ---- the whole suite, measured (keep this test last) ---------------------------------------
def test_the_server_stayed_within_memory_and_cpu(hostile: Hostile) -> None:
    """Over every case above: the server's peak RSS grew by less than 200 MB, and no
    request took more than 2 s of its CPU; the server still answers."""
    code = None
    import urllib.request

    req = urllib.request.Request(
        hostile.base + "health", headers={"Authorization": f"token {hostile.token('end')}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        code = resp.status
    growth = hostile.meter.peak_growth()
    worst = sorted(hostile.meter.cpu_s, key=lambda x: -x[1])[:5]
    print(
        f"hostile suite: {len(hostile.meter.cpu_s)} requests; peak RSS growth "
        f"{growth / 2**20:.1f} MB; most server CPU per request (s): {worst}"
    )
    assert code == 200 and hostile.server.proc.poll() is None
    assert hostile.meter.cpu_s, "the suite's cases ran on this server"
    assert growth < 200 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MB"
    assert worst[0][1] < 2.0, worst
