"""Stored result arrays in PostgreSQL (task_result_chunks): chunking, replacement, cleanup."""

from __future__ import annotations

import io

import numpy as np
import pytest

from qtaskdist_jupyter.core import arrays
from qtaskdist_jupyter.core.errors import DataRefused
from qtaskdist_jupyter.core.store.store import NewTask
from tests.fixtures.circuits import BELL_QASM2


def _task() -> NewTask:
    return NewTask(task_type="simulate", payload={"circuit": BELL_QASM2}, owner="alice")


async def _chunks(store, tid, attempt, name, n):
    return [await store.array_chunk(tid, attempt, name, s) for s in range(n)]


async def test_put_read_replace_and_cleanup(service, tmp_path) -> None:
    store = service.store
    (row,) = await service.create([_task()], enqueue=True)
    tid = row["task_id"]
    await store.claim_many([(tid, 0)], worker="w")
    # Incompressible bytes: 2.5 chunks.
    rng = np.random.default_rng(7)
    n_amp = int(2.5 * arrays.CHUNK_BYTES) // 16
    sv = rng.normal(size=n_amp) + 1j * rng.normal(size=n_amp)
    ref = arrays.statevector_part(sv, 18, str(tmp_path))
    path = tmp_path / ref["file"]
    with open(path, "rb") as fp:
        n = await store.put_array(tid, 1, "statevector", fp)
    assert n == -(-ref["stored_bytes"] // arrays.CHUNK_BYTES) == 3
    got = await _chunks(store, tid, 1, "statevector", n + 1)
    assert got[-1] == b"" and b"".join(got) == path.read_bytes()
    assert np.array_equal(arrays.decode(got, ref), sv)
    # Written again (a settle retried after a lost connection): replaced, not doubled.
    with open(path, "rb") as fp:
        await store.put_array(tid, 1, "statevector", fp)
    assert await store.array_bytes(tid) == ref["stored_bytes"]
    # A user's retry drops them with the result that named them.
    await store.fail(tid, 1, "boom", {})
    await store.requeue(tid, "alice")
    assert await store.array_bytes(tid) == 0
    # ... also the retry the API makes, under the owner's admission lock.
    await store.claim_many([(tid, 1)], worker="w")
    await store.put_array(tid, 2, "statevector", io.BytesIO(b"again"))
    await store.fail(tid, 2, "boom", {})
    await service.retry(tid, "alice")
    assert await store.array_bytes(tid) == 0


async def test_a_later_attempt_replaces_an_earlier_ones_arrays(service) -> None:
    store = service.store
    (row,) = await service.create([_task()], enqueue=True)
    tid = row["task_id"]
    await store.put_array(tid, 1, "memory", io.BytesIO(b"old" * 10))
    await store.put_array(tid, 2, "statevector", io.BytesIO(b"new"))
    assert await store.array_chunk(tid, 1, "memory", 0) == b""
    assert await store.array_chunk(tid, 2, "statevector", 0) == b"new"


async def test_a_nul_character_is_refused_by_the_driver(service) -> None:
    (row,) = await service.store.insert_many([_task()])
    with pytest.raises(DataRefused, match="driver refused the data"):
        await service.store.update(row["task_id"], "alice", {"name": "a\x00b"})


async def test_npy_stream_is_bounded_for_a_frame_that_expands_a_thousandfold(
    service, tmp_path
) -> None:
    """A uniform statevector (H on every qubit) compresses ~10,000:1; the server's .npy
    stream (TaskStore.iter_array) must still hand out at most one chunk at a time."""
    import hashlib

    store = service.store
    (row,) = await service.create([_task()], enqueue=True)
    tid = row["task_id"]
    await store.claim_many([(tid, 0)], worker="w")
    ref = arrays.spill(np.full(1 << 21, 2**-10.5, dtype="<c16"), str(tmp_path))
    path = tmp_path / ref["file"]
    assert path.stat().st_size * 1000 < ref["npy_bytes"]
    with open(path, "rb") as fp:
        n = await store.put_array(tid, 1, "statevector", fp)
    digest, total, biggest = hashlib.sha256(), 0, 0
    stored = {**ref, "attempt": 1, "chunks": n}
    async for piece in store.iter_array(tid, "statevector", stored, npy=True):
        digest.update(piece)
        total, biggest = total + len(piece), max(biggest, len(piece))
    assert total == ref["npy_bytes"] and digest.hexdigest() == ref["sha256"]
    assert biggest <= arrays.CHUNK_BYTES
