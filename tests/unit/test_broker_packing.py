"""The arguments Broker sends to lua/publish.lua (no Redis: the packing is pure)."""

from __future__ import annotations

import json
import uuid

from qtaskdist_jupyter.core.broker.keys import (
    EVENTS_STREAM,
    GROUP,
    PRIORITY_STREAMS,
    STREAMS,
)
from qtaskdist_jupyter.core.broker.packing import KEY_INDEX, PUBLISH_KEYS, ROWS_PER_CALL, pack_rows
from qtaskdist_jupyter.core.broker.wire import (
    FIELD,
    TASK_ID_HEAD,
    TaskMessage,
    decode_event_or_none,
    event_tail,
)

A = uuid.UUID(int=1)
B = uuid.UUID(int=2)
C = uuid.UUID(int=3)
BATCH = uuid.UUID(int=9)
TS = 1712345678.5


def _row(task_id: uuid.UUID, **over: object) -> dict[str, object]:
    row = {
        "task_id": task_id, "task_type": "simulate", "status": "queued", "owner": "alice",
        "attempt": 0, "batch_id": None,
    }  # fmt: skip
    return {**row, **over}


def test_keys_are_the_events_stream_then_every_task_stream() -> None:
    assert PUBLISH_KEYS[0] == EVENTS_STREAM
    assert set(PUBLISH_KEYS[1:]) == {*STREAMS.values(), *PRIORITY_STREAMS.values()}
    assert [KEY_INDEX[k] for k in PUBLISH_KEYS] == list(range(1, len(PUBLISH_KEYS) + 1))


def test_rows_of_one_kind_share_their_tails() -> None:
    rows = [_row(A), _row(B), _row(C, owner="bob", batch_id=BATCH, priority=True)]
    (argv,) = pack_rows(rows, messages=True, events_maxlen=100, ts=TS)
    plain, prio = KEY_INDEX[STREAMS["simulate"]], KEY_INDEX[PRIORITY_STREAMS["simulate"]]
    assert argv == [
        100,
        GROUP,
        f"{A}\t{plain}\t5\t6\n{B}\t{plain}\t5\t6\n{C}\t{prio}\t5\t7",
        "",
        '","task_type":"simulate","attempt":0}',
        '","status":"queued","owner":"alice","task_type":"simulate","attempt":0,'
        f'"batch_id":null,"ts":{TS}}}',
        '","status":"queued","owner":"bob","task_type":"simulate","attempt":0,'
        f'"batch_id":"{BATCH}","ts":{TS}}}',
    ]


def test_the_script_builds_a_message_the_worker_decodes_and_an_event() -> None:
    (argv,) = pack_rows([_row(A, attempt=2)], messages=True, events_maxlen=100, ts=TS)
    task_id, _stream, message, event = argv[2].split("\t")
    body = TASK_ID_HEAD + task_id + argv[int(message) - 1]  # ARGV is 1-based
    assert TaskMessage.decode({"m": body}) == TaskMessage(A, "simulate", 2)
    assert json.loads(TASK_ID_HEAD + task_id + argv[int(event) - 1]) == {
        "task_id": str(A), "status": "queued", "owner": "alice", "task_type": "simulate",
        "attempt": 2, "batch_id": None, "ts": TS,
    }  # fmt: skip


def test_events_only_and_acks() -> None:
    acks = [(STREAMS["simulate"], "1-0"), (PRIORITY_STREAMS["backend_run"], "2-5")]
    rows = [_row(A, status="completed")]
    (argv,) = pack_rows(rows, messages=False, events_maxlen=7, ts=TS, acks=acks)
    assert argv[:4] == [
        7,
        GROUP,
        f"{A}\t0\t0\t5",
        f"{KEY_INDEX[STREAMS['simulate']]}\t1-0\n{KEY_INDEX[PRIORITY_STREAMS['backend_run']]}\t2-5",
    ]
    assert len(argv) == 5  # one event tail, no message tail


def test_acks_alone_make_one_call_and_nothing_makes_none() -> None:
    assert pack_rows([], messages=False, events_maxlen=7, ts=TS) == []
    assert pack_rows([], messages=False, events_maxlen=7, ts=TS, acks=[(EVENTS_STREAM, "1-1")]) == [
        [7, GROUP, "", "1\t1-1"]
    ]


def test_large_writes_are_split_and_the_acks_ride_the_last_call() -> None:
    rows = [_row(uuid.UUID(int=i)) for i in range(ROWS_PER_CALL + 1)]
    calls = pack_rows(rows, messages=True, events_maxlen=7, ts=TS, acks=[(EVENTS_STREAM, "1-1")])
    assert [len(c[2].split("\n")) for c in calls] == [ROWS_PER_CALL, 1]
    assert [c[3] for c in calls] == ["", "1\t1-1"]
    # Each call carries its own tails: indexes restart at ARGV[5].
    assert calls[1][2].endswith("\t5\t6") and len(calls[1]) == 6


def test_the_scripts_ship_with_the_package_and_read_what_packing_writes() -> None:
    from qtaskdist_jupyter.core.broker.broker import PROMOTE_LUA, PUBLISH_LUA

    assert "ZRANGEBYSCORE" in PROMOTE_LUA
    # The row and ack lines publish.lua matches: the separators packing.py writes.
    assert "'([^\\t\\n]+)\\t(%d+)\\t(%d+)\\t(%d+)'" in PUBLISH_LUA
    assert "'(%d+)\\t([^\\n]+)'" in PUBLISH_LUA


def test_an_event_entry_is_decoded_and_a_foreign_one_is_none() -> None:
    # Broker.read_events hands the server these, so the server never decodes the wire.
    tail = event_tail(
        "queued", owner="alice", task_type="simulate", attempt=0, batch_id=None, ts=TS
    )
    body = TASK_ID_HEAD + str(A) + tail
    event = decode_event_or_none("1-0", {FIELD: body})
    assert event == {
        "task_id": str(A),
        "status": "queued",
        "owner": "alice",
        "task_type": "simulate",
        "attempt": 0,
        "batch_id": None,
        "ts": TS,
        "id": "1-0",
    }
    assert decode_event_or_none("2-0", {FIELD.encode(): body.encode()}) == {**event, "id": "2-0"}
    for fields in ({}, {FIELD: "not json"}, {"other": body}):
        assert decode_event_or_none("3-0", fields) is None
