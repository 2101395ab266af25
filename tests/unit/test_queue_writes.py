"""Nothing outside the queue facade writes to the store or the broker.

Every write goes through the facade's package (``core/queue``): a task's state (a row, a
task message, an event, an ack, a dead letter) through a verb of
:class:`~qtaskdist_jupyter.core.queue.TaskQueue`, which owns the order of its writes, and
the fleet's own writes (consumer groups, XREADGROUP / XAUTOCLAIM, which fill a consumer's
pending list, the XCLAIM touch, heartbeats, locks, the retention pass) through
:class:`~qtaskdist_jupyter.core.queue.Upkeep`. This scans the product code (every module
but the facade's package and the store / broker packages themselves) for an attribute that
names a method of :class:`TaskStore` or :class:`Broker` that is not a read, on something
called ``…store`` or ``…broker`` (``self.store.fail``, ``broker.publish``,
``self.queue.store.claim_many``), called or not, so a write handed on as a callable is
caught too. The reads are listed; any other method, a new one included, is a write.
"""

from __future__ import annotations

import ast
from pathlib import Path

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.store.store import TaskStore

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = (
    ROOT / "qtaskdist_jupyter",
    ROOT / "server_extension" / "qtaskdist_server",
    ROOT / "worker" / "qtaskdist_worker",
)
CORE = ROOT / "qtaskdist_jupyter" / "core"
# Where the writes may be called: the facade, and the adapters that implement them.
ALLOWED = (CORE / "queue", CORE / "store", CORE / "broker")
# What changes nothing (or only the caller's own connection).
STORE_READS = frozenset(
    {
        "active_count",
        "active_of",
        "array_bytes",
        "array_chunk",
        "array_ref",
        "check_schema",
        "close",
        "counts",
        "counts_by_type",
        "due_queued",
        "from_url",
        "get",
        "get_many",
        "ids_between",
        "iter_array",
        "list",
        "page_bytes",
        "ping",
        "running_rows",
        "status_of",
        "stored_of",
    }
)
BROKER_READS = frozenset(
    {
        "close",
        "dead_letter_count",
        "from_url",
        "last_event_id",
        "ping",
        "queued_ids",
        "read_cancels",  # XREAD, no group: nothing is recorded
        "read_events",
        "stream_stats",
        "workers",
    }
)


def _methods(cls: type) -> frozenset[str]:
    return frozenset(n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n)))


STORE_WRITES = _methods(TaskStore) - STORE_READS
BROKER_WRITES = _methods(Broker) - BROKER_READS


def product_files() -> list[Path]:
    files = [p for package in PRODUCT for p in package.rglob("*.py")]
    return sorted(p for p in files if not any(p.is_relative_to(a) for a in ALLOWED))


def _receiver(node: ast.expr) -> str:
    """The last name of what an attribute is read from (``self.queue.store`` → store)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def writes_outside(files: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in files:
        nodes = ast.walk(ast.parse(path.read_text(), filename=str(path)))
        for node in sorted(nodes, key=lambda n: getattr(n, "lineno", 0)):
            if not isinstance(node, ast.Attribute):
                continue
            owner = _receiver(node.value).lower()
            is_store = owner.endswith("store") and node.attr in STORE_WRITES
            if is_store or (owner.endswith("broker") and node.attr in BROKER_WRITES):
                where = f"{path.relative_to(root).as_posix()}:{node.lineno}"
                found.append(f"{where} writes {_receiver(node.value)}.{node.attr}")
    return found


def test_no_product_code_outside_the_facade_writes_to_the_store_or_the_broker() -> None:
    files = product_files()
    assert any(p.name == "settle.py" for p in files) and any(p.name == "service.py" for p in files)
    assert writes_outside(files) == []


def test_the_reads_are_the_adapters_methods() -> None:
    # A renamed read must not linger here; the writes are what is left.
    assert STORE_READS <= _methods(TaskStore) and BROKER_READS <= _methods(Broker)
    assert {"gc", "claim_many", "put_array"} <= STORE_WRITES
    assert {"heartbeat", "touch", "read", "autoclaim", "take_gc_lock"} <= BROKER_WRITES


def test_the_scan_finds_a_planted_write(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(
        "async def f(self, item):\n"
        "    await self.queue.claim([], 'w')\n"  # through the facade: fine
        "    self.inflight.cancel(item)\n"  # not a store: fine
        "    await self.store.get_many([])\n"  # a read: fine
        "    rows = await self.store.claim_many([], 'w')\n"
        "    later = lambda: broker.publish(rows)\n"
        "    write = self.queue.store.fail\n"
    )
    found = writes_outside(sorted(package.rglob("*.py")), root=tmp_path)
    assert found == [
        "pkg/mod.py:5 writes store.claim_many",
        "pkg/mod.py:6 writes broker.publish",
        "pkg/mod.py:7 writes store.fail",
    ]
