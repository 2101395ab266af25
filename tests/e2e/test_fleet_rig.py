"""Fleet faults on a multi-host rig of network namespaces (tests/fixtures/netns_rig.py).

Hosts: ``pg`` (PostgreSQL), ``redis`` (Valkey), ``srv`` (the Jupyter server with the
extension), ``w1``..``w3`` (``qtaskdist-worker`` with real URLs), each with its own address
on a private bridge. Every case checks exactly-once (one ``completed`` entry in each task's
attempts history, results correct, one completed event per task) and prints its figures.
Short visibility timeouts (worker flags) keep the whole module to a few minutes.

Without namespaces (not root, not Linux) the module skips with a loud reason; under ``CI``
that is a failure, as .ci/run runs as root on Linux.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.demo import server_args
from qtaskdist_jupyter.core.config import Settings, libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.fleet_checks import check_rows, completion_event_counts, figures
from tests.fixtures.netns_rig import Rig, RigUnavailable
from tests.fixtures.workers import FAST, heavy_payload

REFUSAL = "late completion(s) refused by the attempt fence"
VISIBILITY_S, RECONCILE_S = 1.5, 1.0  # FAST's --visibility-timeout-s, --reconcile-interval-s
SERVER_PORT = 8888
TOKEN = secrets.token_hex(16)


def _not_run(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"FLEET RIG TESTS NOT RUN in CI: {why}")
    pytest.skip(f"FLEET RIG TESTS NOT RUN: {why}")


class Fleet:
    def __init__(self, rig: Rig, db_url: str, redis_url: str, workdir: Path) -> None:
        self.rig, self.db_url, self.redis_url, self.workdir = rig, db_url, redis_url, workdir
        self.workers: dict[str, Any] = {}
        self.server: Any = None

    # ---- in the ctl host ---------------------------------------------------------
    def probe(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.rig.probe(fn, *args)

    def submit(self, payloads: list[dict[str, Any]]) -> list[uuid.UUID]:
        return self.probe(_submit, self.db_url, self.redis_url, self.workdir, payloads)

    def rows(self, ids: list[uuid.UUID] | None = None) -> list[dict[str, Any]]:
        return self.probe(_rows, self.db_url, ids)

    def events(self) -> Counter[str]:
        return self.probe(_events, self.redis_url)

    def api(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        url = f"http://{self.rig.addr['srv']}:{SERVER_PORT}/qtaskdist/api/{path}"
        return self.probe(_http, method, url, kw)

    def wait(self, cond: Callable[[], bool], timeout_s: float, what: str) -> float:
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout_s:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.1)
        return time.monotonic() - t0

    # ---- processes on their hosts --------------------------------------------------
    def start_worker(self, host: str, *args: str) -> Any:
        cmd = [sys.executable, "-m", "qtaskdist_worker", *FAST, "--name", host,
               "--task-types", "simulate", "--database-url", self.db_url,
               "--redis-url", self.redis_url, *args]  # fmt: skip
        proc = self.rig.popen(host, cmd, log=self.log(host), env=_env())
        self.workers[host] = proc
        return proc

    def log(self, host: str) -> Path:
        return self.workdir / f"{host}.log"

    def wait_workers(self, n: int, timeout_s: float = 90) -> None:
        self.wait(lambda: self.probe(_heartbeats, self.redis_url) >= n, timeout_s, "heartbeats")

    def start_server(self) -> None:
        root = self.workdir / "srv-root"
        root.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "jupyter_server", f"--ServerApp.ip={self.rig.addr['srv']}",
               f"--ServerApp.port={SERVER_PORT}", f"--IdentityProvider.token={TOKEN}",
               "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}",
               "--ServerApp.port_retries=0", "--QtaskdistApp.worker_stale_s=3",
               *server_args()]  # fmt: skip
        env = {**_env(), "DATABASE_URL": self.db_url, "REDIS_URL": self.redis_url,
               "QTASKDIST_LOCAL_WORKERS": "0",
               "QTASKDIST_HOME": str(self.workdir / "home")}  # fmt: skip
        self.server = self.rig.popen("srv", cmd, log=self.log("srv"), env=env)

        def up() -> bool:
            assert self.server.poll() is None, self.log("srv").read_text()[-3000:]
            return self.api("GET", "health")[0] == 200

        self.wait(up, 120, "the server")

    def kill(self, host: str) -> None:
        proc = self.workers.pop(host)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QTASKDIST_", "QBRAID_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return {**env, "PYTHONUNBUFFERED": "1"}


# ---- functions run in the ctl host (the probe thread) ----------------------------------
def _submit(db: str, rds: str, home: Path, payloads: list[dict[str, Any]]) -> list[uuid.UUID]:
    from qtaskdist_server.api.service import TaskService

    from qtaskdist_jupyter.core.schemas import validate_payload
    from qtaskdist_jupyter.core.store.store import NewTask

    async def go() -> list[uuid.UUID]:
        svc = TaskService.from_settings(Settings(database_url=db, redis_url=rds, home=home))
        try:
            new = [
                NewTask(task_type="simulate", owner="alice", max_retries=3,
                        payload=validate_payload("simulate", p, svc.settings.limits))
                for p in payloads
            ]  # fmt: skip
            ids: list[uuid.UUID] = []
            for i in range(0, len(new), 1000):
                ids += [r["task_id"] for r in await svc.create(new[i : i + 1000], enqueue=True)]
            return ids
        finally:
            await svc.close()

    return asyncio.run(go())


def _rows(db: str, ids: list[uuid.UUID] | None) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    sql = "select task_id, status, worker, attempt, payload, result, meta_data from tasks"
    with psycopg.connect(libpq_url(db), row_factory=dict_row, connect_timeout=5) as conn:
        if ids is None:
            return conn.execute(sql).fetchall()
        return conn.execute(sql + " where task_id = any(%s)", (ids,)).fetchall()


def _events(rds: str) -> Counter[str]:
    import redis

    with redis.Redis.from_url(rds, decode_responses=True, socket_timeout=10) as r:
        return completion_event_counts(r)


def _heartbeats(rds: str) -> int:
    import redis

    with redis.Redis.from_url(rds, socket_timeout=10) as r:
        return int(r.hlen("qtaskdist:workers"))


def _reset(db: str, rds: str) -> None:
    import psycopg
    import redis

    with psycopg.connect(libpq_url(db), autocommit=True, connect_timeout=5) as conn:
        conn.execute("truncate tasks cascade")
    with redis.Redis.from_url(rds, socket_timeout=10) as r:
        r.flushall()


def _http(method: str, url: str, kw: dict[str, Any]) -> tuple[int, Any]:
    import httpx

    headers = {"Authorization": f"token {TOKEN}"}
    try:
        r = httpx.request(method, url, headers=headers, timeout=60, **kw)
    except httpx.HTTPError as exc:
        return 0, str(exc)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


# ---- fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, str, str, Path]]:
    workdir = tmp_path_factory.mktemp("rig")
    workdir.chmod(0o755)
    try:
        rig = Rig(workdir, ["pg", "redis", "srv", "w1", "w2", "w3"])
    except (RigUnavailable, OSError) as exc:
        _not_run(str(exc))
    try:
        db = rig.start_postgres("pg")
        rds = rig.start_valkey("redis")
        from qtaskdist_jupyter.core.migrate import upgrade

        rig.probe(upgrade, db)
        yield rig, db, rds, workdir
    finally:
        rig.close()


@pytest.fixture
def fleet(rig: tuple[Rig, str, str, Path], tmp_path: Path) -> Iterator[Fleet]:
    the_rig, db, rds, _ = rig
    for host in ("pg", "redis", "srv", "w1", "w2", "w3"):
        the_rig.link(host, True)
    the_rig.probe(_reset, db, rds)
    f = Fleet(the_rig, db, rds, tmp_path)
    try:
        yield f
    finally:
        for host in list(f.workers):
            f.kill(host)
        if f.server is not None and f.server.poll() is None:
            os.killpg(f.server.pid, signal.SIGKILL)
            f.server.wait(10)


def bell(n: int, shots: int = 64) -> list[dict[str, Any]]:
    return [{"circuit": BELL_QASM2, "shots": shots}] * n


def _refusals(fleet: Fleet, host: str) -> list[str]:
    return [line for line in fleet.log(host).read_text().splitlines() if REFUSAL in line]


def exactly_once(fleet: Fleet, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    rows = fleet.rows(ids)
    assert len(rows) == len(ids), "rows lost"
    check_rows(rows)
    many = {t: n for t, n in fleet.events().items() if n > 1}
    assert not many, f"completed published more than once: {list(many.items())[:5]}"
    return rows


# ---- the cases -------------------------------------------------------------------------
def test_worker_partitioned_mid_run(fleet: Fleet) -> None:
    (tid,) = fleet.submit([heavy_payload(16)])
    fleet.start_worker("w1")

    def running_on(host: str) -> bool:
        (row,) = fleet.rows([tid])
        return row["status"] == "running" and row["worker"] == host

    fleet.wait(lambda: running_on("w1"), 90, "the task to run on w1")
    fleet.rig.link("w1", False)
    cut_at = time.monotonic()
    fleet.start_worker("w2")

    def completed_by_w2() -> bool:
        (row,) = fleet.rows([tid])
        return row["status"] == "completed" and row["worker"] == "w2"

    fleet.wait(completed_by_w2, 120, "w2 to take the task over and complete it")
    recovery_s = time.monotonic() - cut_at
    fleet.kill("w2")
    fleet.rig.link("w1", True)
    fleet.wait(lambda: bool(_refusals(fleet, "w1")), 120, "w1 to report its refused completion")
    later = fleet.submit(bell(3))

    def later_done() -> bool:
        return all(r["status"] == "completed" for r in fleet.rows(later))

    fleet.wait(later_done, 90, "w1 to go on with new work")
    assert {r["worker"] for r in fleet.rows(later)} == {"w1"}
    assert fleet.workers["w1"].poll() is None
    rows = exactly_once(fleet, [tid, *later])
    (row,) = [r for r in rows if r["task_id"] == tid]
    history = [(a["worker"], a["outcome"]) for a in row["meta_data"]["attempts"]]
    assert history[-1] == ("w2", "completed") and ("w1", "completed") not in history
    refusals = _refusals(fleet, "w1")
    assert len(refusals) == 1, refusals
    figures("worker partitioned mid-run", tasks=4, completions=len(rows),
            fence_refusals=len(refusals), recovery_s=recovery_s)  # fmt: skip


@pytest.mark.parametrize("outage_s", [5.0, 60.0])
@pytest.mark.parametrize("service_host", ["pg", "redis"])
def test_worker_loses_one_service(fleet: Fleet, service_host: str, outage_s: float) -> None:
    worker = fleet.start_worker("w1", "--batch-size", "4")
    fleet.wait_workers(1)
    ids = fleet.submit(bell(400))

    def completed() -> int:
        return sum(r["status"] == "completed" for r in fleet.rows(ids))

    fleet.wait(lambda: completed() >= 20, 90, "the first completions")
    fleet.rig.link(service_host, False)
    time.sleep(outage_s)
    fleet.rig.link(service_host, True)
    back_at, before = time.monotonic(), completed()
    fleet.wait(lambda: completed() > before or before == len(ids), 120, "progress again")
    recovery_s = time.monotonic() - back_at
    fleet.wait(lambda: completed() == len(ids), 180, "every task")
    assert worker.poll() is None, "the worker restarted or died"
    rows = exactly_once(fleet, ids)
    figures(f"worker loses {service_host} for {outage_s:g} s", tasks=len(ids),
            completions=len(rows),
            fence_refusals=len(_refusals(fleet, "w1")), recovery_s=recovery_s)  # fmt: skip


def test_server_loses_redis(fleet: Fleet) -> None:
    fleet.start_server()
    fleet.start_worker("w1")
    fleet.wait_workers(1)
    spec = {"task_type": "simulate", "payload": {"circuit": BELL_QASM2, "shots": 32}}
    code, first = fleet.api("POST", "tasks", json={**spec, "enqueue": True})
    assert code == 201, first
    code, start = fleet.api("GET", "events", params={"timeout_s": 0})
    assert code == 200, start

    fleet.rig.link("redis", False)
    cut_at = time.monotonic()
    rows_before = len(fleet.rows())
    t0 = time.monotonic()
    code, refused = fleet.api("POST", "tasks", json={**spec, "enqueue": True})
    answer_s = time.monotonic() - t0
    assert code == 503 and refused["error"] == "queue_unavailable", (code, refused)
    assert len(fleet.rows()) == rows_before, "the refused POST left a row"
    code, pending = fleet.api("POST", "tasks", json={**spec, "enqueue": False})
    assert code == 201 and pending["status"] == "pending", pending  # PostgreSQL alone
    code, health = fleet.api("GET", "health")
    assert code == 200 and health["redis"]["ok"] is False and health["database"]["ok"]
    code, _ = fleet.api("GET", "events", params={"timeout_s": 1})
    assert code == 503

    fleet.rig.link("redis", True)
    outage_s = time.monotonic() - cut_at

    def accepted() -> bool:
        return fleet.api("POST", f"tasks/{pending['task_id']}/enqueue")[0] == 200

    recovery_s = fleet.wait(accepted, 120, "enqueue to work again")  # after the link is back
    ids = [uuid.UUID(first["task_id"]), uuid.UUID(pending["task_id"])]
    fleet.wait(lambda: all(r["status"] == "completed" for r in fleet.rows(ids)), 90, "both")
    code, later = fleet.api("GET", "events", params={"after": start["cursor"], "timeout_s": 5})
    assert code == 200
    done = {e["task_id"] for e in later["events"] if e["status"] == "completed"}
    # The pending task was enqueued and run after the outage: its events prove they resumed.
    assert pending["task_id"] in done, later
    rows = exactly_once(fleet, ids)
    figures("server loses Redis", tasks=len(ids), completions=len(rows), fence_refusals=0,
            recovery_s=recovery_s, outage_s=outage_s,
            refused_post_answered_in_s=answer_s)  # fmt: skip


def test_tasks_spread_across_three_worker_hosts(fleet: Fleet) -> None:
    for host in ("w1", "w2", "w3"):
        fleet.start_worker(host, "--batch-size", "16")
    fleet.wait_workers(3)
    t0 = time.monotonic()
    ids = fleet.submit(bell(3000, shots=32))

    def done() -> bool:
        return all(r["status"] == "completed" for r in fleet.rows(ids))

    fleet.wait(done, 300, "3,000 tasks")
    took_s = time.monotonic() - t0
    rows = exactly_once(fleet, ids)
    split = Counter(r["worker"] for r in rows)
    assert set(split) == {"w1", "w2", "w3"}, split
    assert min(split.values()) >= 100, split  # each host did a real share
    figures("3 worker hosts x 3,000 tasks", tasks=len(ids), completions=len(rows),
            fence_refusals=0, run_s=took_s, split=dict(sorted(split.items())))  # fmt: skip


def test_worker_host_dies_for_good(fleet: Fleet) -> None:
    fleet.start_server()
    fleet.start_worker("w1")
    fleet.start_worker("w2")
    fleet.wait_workers(2)
    (tid,) = fleet.submit([heavy_payload(8)])
    # Whichever host took it dies.
    fleet.wait(lambda: fleet.rows([tid])[0]["status"] == "running", 60, "the task to start")
    victim = fleet.rows([tid])[0]["worker"]
    survivor = "w2" if victim == "w1" else "w1"
    fleet.kill(victim)
    fleet.rig.link(victim, False)
    died_at = time.monotonic()

    def gone() -> bool:
        code, health = fleet.api("GET", "health")
        alive = {w["name"]: w["alive"] for w in health["workers"]}
        return code == 200 and alive.get(victim) is False and alive.get(survivor) is True

    fleet.wait(gone, 30, "health to show the dead host gone")
    fleet.wait(lambda: fleet.rows([tid])[0]["status"] == "completed", 90, "the takeover")
    recovery_s = time.monotonic() - died_at
    (row,) = exactly_once(fleet, [tid])
    assert row["worker"] == survivor
    run_s = float(row["meta_data"]["run_time_s"])
    # Taken over within visibility timeout + reconcile interval, then run once more.
    assert recovery_s - run_s < VISIBILITY_S + RECONCILE_S + 5.0, (recovery_s, run_s)
    figures("a worker host dies for good", tasks=1, completions=1, fence_refusals=0,
            recovery_s=recovery_s, takeover_s=recovery_s - run_s)  # fmt: skip
