"""Least privilege on the data side (migration 0003_roles, ``qtaskdist redis-acl``).

Real parts only: login roles that are members of ``qtaskdist_service`` /
``qtaskdist_worker`` on a freshly migrated database, a Redis server of this test's own
loading the ACL file the CLI prints, the service's TaskService and a real worker process
connected as those. Each side does its whole job, and neither can run DDL or touch what
is not its own.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from qtaskdist_server.api.params import ListParams
from qtaskdist_server.api.service import TaskService

from qtaskdist_jupyter.core.config import Settings, libpq_url
from qtaskdist_jupyter.core.schemas import TaskCreate, TaskUpdate
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.least_privilege import AclRedis, acl_redis, as_role, login_role
from tests.fixtures.workers import rows, start_worker, stop, wait_until

SERVICE, WORKER = "qtaskdist-service", "qtaskdist-worker"
# Enough shots that the memory array is stored out of the row (task_result_chunks).
STORED_MEMORY = {"circuit": BELL_QASM2, "shots": 20_000, "seed": 7, "memory": True}


@pytest.fixture
def roles() -> Iterator[dict[str, str]]:
    with login_role("qtaskdist_service") as svc, login_role("qtaskdist_worker") as wrk:
        yield {SERVICE: svc, WORKER: wrk}


@pytest.fixture
def acl(tmp_path) -> Iterator[AclRedis]:
    with acl_redis(tmp_path / "redis") as server:
        yield server


def _settings(settings: Settings, database_url: str, roles, acl: AclRedis, side: str):
    return dataclasses.replace(
        settings, database_url=as_role(database_url, roles[side]), redis_url=acl.url(side)
    )


async def test_each_side_does_its_whole_job_as_its_role(
    settings, database_url, roles, acl, tmp_path
) -> None:
    service = TaskService.from_settings(_settings(settings, database_url, roles, acl, SERVICE))
    worker_settings = _settings(settings, database_url, roles, acl, WORKER)
    try:
        submit = TaskCreate(task_type="simulate", payload=STORED_MEMORY, enqueue=True)
        first = await service.submit("alice", submit)
        second = await service.submit("alice", submit)
        await service.cancel(second["task_id"], "alice")
        worker = start_worker(worker_settings, "--concurrency", "1", log=tmp_path / "w.log")
        try:
            ids = [first["task_id"], second["task_id"]]
            await _wait_status(service, ids[:1], "completed", worker, tmp_path)
            await service.retry(second["task_id"], "alice")  # drops arrays, re-publishes
            await _wait_status(service, ids, "completed", worker, tmp_path)
        finally:
            assert stop(worker) == 0, (tmp_path / "w.log").read_text()[-3000:]
        log = (tmp_path / "w.log").read_text()
        assert "NOPERM" not in log and "permission denied" not in log, log[-3000:]
        await _service_reads_updates_and_deletes(service, first["task_id"], ids)
    finally:
        await service.close()


async def _service_reads_updates_and_deletes(service, task_id, ids) -> None:
    assert (await service.get(task_id, "alice"))["status"] == "completed"
    ref = await service.array_ref(task_id, "alice", "memory")
    stored = [c async for c in service.iter_array(task_id, "memory", ref, npy=False)]
    assert sum(map(len, stored)) > 0
    renamed = await service.update(task_id, "alice", TaskUpdate(name="bell", labels={"k": 1}))
    assert renamed["name"] == "bell"
    listed, _next = await service.list_tasks("alice", ListParams(), operator=False)
    assert {r["task_id"] for r in listed} == set(ids)
    page = await service.events("0-0", count=100)
    assert len(page.events) >= 6 and await service.last_event_id() == page.position
    await service.delete(task_id, "alice")  # its stored chunks go by cascade
    listed, _next = await service.list_tasks("alice", ListParams(), operator=False)
    assert [r["task_id"] for r in listed] == [ids[1]]
    health = await service.health("alice", operator=True, stale_s=30)
    assert health["database"]["ok"] and health["redis"]["ok"], health
    assert set(health["streams"]) == {"simulate", "c_qir_convert", "backend_run"}


async def _wait_status(service, ids, status, worker, tmp_path) -> None:
    async def done() -> bool:
        assert worker.poll() is None, (tmp_path / "w.log").read_text()[-3000:]
        return all(r["status"] == status for r in await rows(service, ids))

    await wait_until(done, timeout=90)


def _connect(database_url: str, role: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(as_role(database_url, role)), autocommit=True)


def _refused(conn: psycopg.Connection, sql: str) -> None:
    try:
        conn.execute(sql)
    except psycopg.errors.InsufficientPrivilege:
        return
    raise AssertionError(f"allowed: {sql}")


@pytest.mark.parametrize("side", [SERVICE, WORKER])
def test_neither_role_can_run_ddl(database_url, roles, side) -> None:
    with _connect(database_url, roles[side]) as conn:
        for sql in (
            "DROP TABLE tasks",
            "DROP TABLE task_result_chunks",
            "CREATE TABLE mine (x int)",
            "ALTER TABLE tasks ADD COLUMN x int",
            "TRUNCATE tasks",
            "CREATE INDEX ix_mine ON tasks (name)",
            "UPDATE alembic_version SET version_num = 'x'",
            f"ALTER TABLE tasks OWNER TO {roles[side]}",
            "DROP ROLE qtaskdist_worker",
            "CREATE SCHEMA mine",
        ):
            _refused(conn, sql)
        assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (0,)


def test_each_role_is_refused_what_is_not_its_own(database_url, roles) -> None:
    task = uuid.uuid4()
    insert = (
        "INSERT INTO tasks (task_id, task_type, payload, owner) "
        f"VALUES ('{task}', 'simulate', '{{}}', 'mallory')"
    )
    chunk = f"INSERT INTO task_result_chunks VALUES ('{task}', 1, 'x', 0, '\\x00')"
    with _connect(database_url, roles[WORKER]) as conn:
        for sql in (insert, f"DELETE FROM tasks WHERE task_id = '{task}'"):
            _refused(conn, sql)
    with _connect(database_url, roles[SERVICE]) as conn:
        conn.execute(insert)  # the service creates tasks …
        _refused(conn, chunk)  # … but writes no results
        conn.execute(f"DELETE FROM tasks WHERE task_id = '{task}'")


def test_redis_users_are_refused_admin_commands_and_other_keys(acl: AclRedis) -> None:
    allowed_elsewhere = {SERVICE: "stream:dead", WORKER: "stream:cancels"}  # read only
    with acl.admin() as admin:
        admin.set("canary", "1")
    for user in (SERVICE, WORKER):
        client = redis.Redis.from_url(acl.url(user), decode_responses=True)
        assert client.ping()
        for call in (
            lambda c: c.flushall(),
            lambda c: c.flushdb(),
            lambda c: c.config_get("*"),
            lambda c: c.config_set("dir", "/tmp"),
            lambda c: c.keys("*"),
            lambda c: c.get("stream:simulate"),
            lambda c: c.set("elsewhere", "1"),
            lambda c: c.eval("return 1", 0),
            lambda c, u=user: c.xadd(allowed_elsewhere[u], {"m": "forged"}),
            lambda c, u=user: c.acl_setuser(u, enabled=True, commands=["+@all"]),
            lambda c: c.delete("stream:simulate"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                call(client)
        # A script it may load runs with its own rights: no way around the lists.
        sha = client.script_load("return redis.call('FLUSHALL')")
        with pytest.raises(redis.exceptions.ResponseError, match="can't run this command"):
            client.evalsha(sha, 0)
        client.close()
    with acl.admin() as admin:
        assert admin.get("canary") == "1" and admin.dbsize() == 1  # nothing flushed or added


def test_the_service_user_cannot_forge_worker_state(acl: AclRedis) -> None:
    client = redis.Redis.from_url(acl.url(SERVICE), decode_responses=True)
    for call in (
        lambda c: c.hset("qtaskdist:workers", "fake", "{}"),
        lambda c: c.zadd("qtaskdist:delayed", {"stream:simulate|x": 0}),
        lambda c: c.xgroup_create("stream:simulate", "qtaskdist", mkstream=True),
        lambda c: c.xack("stream:simulate", "qtaskdist", "0-1"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call(client)
    client.close()


def test_migration_runs_again_and_downgrades(database_url) -> None:
    from qtaskdist_jupyter.core.migrate import downgrade, upgrade

    def granted(role: str) -> bool:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            sql = "SELECT has_table_privilege(%s, 'tasks', 'SELECT')"
            return bool(conn.execute(sql, (role,)).fetchone()[0])

    assert granted("qtaskdist_worker") and granted("qtaskdist_service")
    downgrade(database_url, "0002_results")
    assert not granted("qtaskdist_worker") and not granted("qtaskdist_service")
    upgrade(database_url)  # the roles exist already (cluster-wide): guarded
    assert granted("qtaskdist_worker") and granted("qtaskdist_service")
