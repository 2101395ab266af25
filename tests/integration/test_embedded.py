"""Embedded PostgreSQL 18 + Valkey: real daemons under a temp home, real client processes.

The module shares one home; a finalizer stops whatever runs there, even after a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from qtaskdist_jupyter.core.config import Settings, libpq_url
from qtaskdist_jupyter.core.embedded.services import (
    EmbeddedServices,
    ensure_services,
    resolve_settings,
    services_status,
    stop_services,
)
from qtaskdist_jupyter.core.errors import ServiceUnavailable


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("embedded")
    base.chmod(0o700)  # like /root: as root, postgres's system user must still get in
    path = base / "home"
    try:
        yield path
    finally:
        stop_services(path)
        assert not _our_processes(path), "embedded daemons leaked"
        assert not services_status(path)["watchdog"]["running"], "the watchdog leaked"


@pytest.fixture
def services(home: Path) -> EmbeddedServices:
    return ensure_services(home)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("REDIS_HOST", None)
    env["QTASKDIST_HOME"] = str(home)
    return env


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qtaskdist_jupyter.core.embedded.cli", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _exports(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        out[key] = value
    return out


def _our_processes(home: Path) -> list[psutil.Process]:
    """Every postmaster or valkey-server whose command line names this home or its ports."""
    state_file = home.resolve() / "services.json"
    ports = []
    if state_file.exists():
        state = json.loads(state_file.read_text())
        ports = [str(state[k]["port"]) for k in ("postgres", "valkey") if k in state]
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if proc.info["name"] == "postgres" and f"-D {home.resolve()}/" in cmd:
            found.append(proc)
        elif "valkey" in (proc.info["name"] or "") and any(p in cmd for p in ports):
            found.append(proc)
    return found


def _port_open(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_start_gives_working_urls(services: EmbeddedServices) -> None:
    assert services.started_now
    assert services.database_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert services.database_url.endswith("/qtaskdist")
    with psycopg.connect(libpq_url(services.database_url), connect_timeout=5) as conn:
        version, db, addr = conn.execute(
            "select version(), current_database(), host(inet_server_addr())"
        ).fetchone()
    assert version.startswith("PostgreSQL 18"), version
    assert (db, addr) == ("qtaskdist", "127.0.0.1")  # over TCP, not a unix socket

    assert services.redis_url.startswith("redis://127.0.0.1:")
    with redis.Redis.from_url(services.redis_url) as r:
        assert r.ping()
        assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        r.xadd("stream:probe", {"k": "v"})
        assert r.xlen("stream:probe") == 1
    assert len(_our_processes(services.home)) >= 2


def test_second_process_joins_the_running_pair(services: EmbeddedServices) -> None:
    before = {p.pid for p in _our_processes(services.home)}
    done = _cli(services.home, "services", "start", "--env")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("export DATABASE_URL=")
    assert _exports(done.stdout) == {
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
    }
    assert "already running" in done.stderr
    again = ensure_services(services.home)
    assert not again.started_now
    assert (again.postgres_pid, again.valkey_pid) == (services.postgres_pid, services.valkey_pid)
    assert {p.pid for p in _our_processes(services.home)} == before


def test_status_cli(services: EmbeddedServices) -> None:
    done = _cli(services.home, "services", "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["postgres"]["running"] and status["valkey"]["running"]
    assert status["postgres"]["pid"] == services.postgres_pid
    assert status["valkey"]["url"] == services.redis_url
    text = _cli(services.home, "services", "status")
    assert text.returncode == 0
    assert f"running (pid {services.postgres_pid})" in text.stdout


def test_db_upgrade_cli_migrates_the_embedded_database(services: EmbeddedServices) -> None:
    done = _cli(services.home, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(libpq_url(services.database_url)) as conn:
        assert conn.execute("select to_regclass('public.tasks') is not null").fetchone() == (True,)


def test_resolve_settings(services: EmbeddedServices) -> None:
    both = resolve_settings(Settings(home=services.home))
    assert (both.database_url, both.redis_url) == (services.database_url, services.redis_url)
    given = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    mixed = resolve_settings(Settings(home=services.home, database_url=given))
    assert (mixed.database_url, mixed.redis_url) == (given, services.redis_url)
    cluster = Settings(home=services.home, database_url=given, redis_url="redis://h:1/0")
    assert resolve_settings(cluster) is cluster


def test_stop_then_restart_keeps_ports_and_data(services: EmbeddedServices) -> None:
    with psycopg.connect(libpq_url(services.database_url), autocommit=True) as conn:
        conn.execute("create table if not exists kept (v int)")
        conn.execute("insert into kept values (42)")
    procs = _our_processes(services.home)
    assert stop_services(services.home)
    gone, alive = psutil.wait_procs(procs, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not _port_open(services.database_url) and not _port_open(services.redis_url)
    status = services_status(services.home)
    assert not status["postgres"]["running"] and not status["valkey"]["running"]
    assert _cli(services.home, "services", "status").returncode == 1
    assert not stop_services(services.home)  # nothing left to stop

    again = ensure_services(services.home)
    assert again.started_now
    assert (again.database_url, again.redis_url) == (services.database_url, services.redis_url)
    assert again.postgres_pid != services.postgres_pid
    with psycopg.connect(libpq_url(again.database_url)) as conn:
        assert conn.execute("select v from kept").fetchall() == [(42,)]


def test_concurrent_starts_start_one_pair(home: Path) -> None:
    stop_services(home)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "qtaskdist_jupyter.core.embedded.cli", "services", "start"],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert len({out for out, _ in outputs}) == 1  # the same URLs for all three
    assert sum("started under" in err for _, err in outputs) == 1, outputs
    names = sorted(p.name() for p in _our_processes(home))
    assert names == ["postgres", "valkey-server"], names


def test_failed_start_raises_with_log(home: Path) -> None:
    stop_services(home)
    conf = home / "postgres" / "data" / "postgresql.conf"
    original = conf.read_text()
    log = home.resolve() / "postgres" / "postgres.log"
    try:
        with conf.open("a") as f:
            f.write("\nthis line is = = not valid\n")
        with pytest.raises(ServiceUnavailable) as info:
            ensure_services(home)
        message = str(info.value)
        assert "embedded PostgreSQL failed to start" in message
        assert str(log) in message and info.value.detail["log"] == str(log)
        assert "syntax error" in message  # the log's last lines came along

        done = _cli(home, "services", "start")
        assert done.returncode == 2
        assert done.stderr.startswith("qtaskdist: error: embedded PostgreSQL failed to start")
        assert "Traceback" not in done.stderr
    finally:
        conf.write_text(original)
    assert ensure_services(home).started_now  # repaired: starts again
