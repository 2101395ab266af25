"""A team on one JupyterHub (issue 22): a real hub and proxy, the qtaskdist service as a
hub-managed service from deploy/jupyterhub/jupyterhub_config.py (the file the docs show),
alice's and bob's single-user servers, real kernels, one worker, and Chromium.

One scenario, the parts in order: alice's ``%%qtask simulate`` Bell in a real kernel;
bob can't read or cancel it; no user process holds a secret of the data side; forged,
revoked, missing and impersonating tokens are refused with nothing written; only a hub
admin sees the fleet; alice's live table at the hub's public URL in Chromium; and the hub
down is 503 ``auth_unavailable``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.hub import ADMIN, Hub, free_port
from tests.fixtures.remote_kernel import RemoteKernel
from tests.fixtures.server import simulate_spec, start_worker

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
AUTH_CACHE_S = 2

BELL_CELL = """%%qtask simulate --shots 500 --seed 3 --name bell --out bell --wait --timeout 120
OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0], q[1];
measure q -> c;
"""


def _rows(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        sql = "SELECT owner, coalesce(name, '') FROM tasks ORDER BY created_at"
        return [tuple(r) for r in conn.execute(sql)]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _user_processes(hub: Hub) -> list[psutil.Process]:
    """The single-user servers and everything they started (kernels, their children)."""
    procs = []
    for p in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            if any("jupyterhub-singleuser" in part for part in p.cmdline()):
                procs += [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return procs


def _service_process(hub: Hub) -> psutil.Process:
    for p in psutil.Process(hub.proc.pid).children(recursive=True):
        if "service" in p.cmdline() and "qtaskdist_jupyter.core.embedded.cli" in p.cmdline():
            return p
    raise AssertionError(f"no qtaskdist service process under the hub\n{hub.log_tail()}")


@pytest.fixture
def team(
    request: pytest.FixtureRequest, hub_factory, database_url: str, redis_url: str, worker_procs
) -> Iterator[dict[str, Any]]:
    """The hub from deploy/jupyterhub/jupyterhub_config.py, its qtaskdist service up, and
    one worker (none with ``indirect`` param False)."""
    port = free_port()
    hub = hub_factory(
        config_file=CONFIG,
        env={
            "QTASKDIST_DATABASE_URL": database_url,
            "QTASKDIST_REDIS_URL": redis_url,
            "QTASKDIST_SERVICE_PORT": str(port),
            "QTASKDIST_SERVICE_AUTH_CACHE_S": str(AUTH_CACHE_S),
        },
    )
    if getattr(request, "param", True):
        worker_procs.append(start_worker(database_url, redis_url, "--name", "hub-worker"))
    service = f"http://127.0.0.1:{port}/services/qtaskdist/qtaskdist/api/"
    deadline = time.monotonic() + 90
    while True:  # the hub starts its service; it is up once it answers (403: no token)
        try:
            if httpx.get(service + "health", timeout=5).status_code == 403:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"service not up\n{hub.log_tail()}"
        time.sleep(0.5)
    orphans: list[psutil.Process] = []  # what a test left running when it killed the hub
    yield {"hub": hub, "api": service, "db": database_url, "redis": redis_url, "orphans": orphans}
    for p in orphans:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _gone, alive = psutil.wait_procs(orphans, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


BOB_PROBE = """
import contextlib
import json
from qtaskdist_jupyter import Client
from qtaskdist_jupyter.core.errors import ApiError
c = Client()
out = {"url": c.url}
for verb in ("get", "cancel"):
    try:
        getattr(c, verb)(%r)
        out[verb] = 200
    except ApiError as exc:
        out[verb] = exc.detail["status"]
print(json.dumps(out))
"""


def _kernel_runs_alices_bell(hub: Hub, alice_url: str) -> tuple[str, RemoteKernel]:
    token, _ = hub.create_token("alice", note="drives alice's kernel")
    kernel = RemoteKernel(alice_url, token)
    kernel.run("%load_ext qtaskdist_jupyter")
    kernel.run(BELL_CELL, timeout_s=180)
    got = json.loads(kernel.run("import json; print(json.dumps([bell.task_id, bell.counts()]))"))
    task_id, counts = got
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 500, counts
    return task_id, kernel


def _secrets(hub: Hub, team: dict[str, Any]) -> dict[str, str]:
    service_env = _environ(_service_process(hub).pid)
    assert service_env["DATABASE_URL"] == team["db"]  # the service holds them: the check bites
    return {
        "database URL": team["db"],
        "database URL (libpq)": libpq_url(team["db"]),
        "Redis URL": team["redis"],
        "user password": hub.user_password,
        "admin password": hub.admin_password,
        "rig admin token": hub.admin_token,
        "service token": service_env["JUPYTERHUB_API_TOKEN"],
    }


def _assert_no_secret(env: dict[str, str], secrets: dict[str, str], where: str) -> None:
    assert not {"DATABASE_URL", "REDIS_URL", "PGPASSWORD"} & set(env), (where, sorted(env))
    for what, value in secrets.items():
        leaks = [k for k, v in env.items() if value in v]
        assert not leaks, f"{where}: {what} in {leaks}"
    assert not any(v.startswith(("postgresql", "redis://")) for v in env.values()), where


def _browser_signs_in_to_the_service(session: Any, hub: Hub, task_id: str) -> None:
    """Hub OAuth straight to the service (``/services/qtaskdist/whoami``) at the hub's
    public URL: the cookie it sets reads alice's tasks; a POST with it but no XSRF token
    is refused."""
    public = hub.service_url("qtaskdist")
    who = session.get(public + "whoami")
    assert who.status_code == 200 and who.json()["name"] == session.user, who.text
    listed = session.get(public + "qtaskdist/api/tasks")
    assert listed.status_code == 200, listed.text
    assert [t["task_id"] for t in listed.json()["tasks"]] == [task_id]
    r = session.client.post(public + "qtaskdist/api/tasks", json=simulate_spec(BELL_QASM2))
    assert r.status_code == 403, r.text


def test_a_team_on_one_hub(team: dict[str, Any]) -> None:
    hub, api, db = team["hub"], team["api"], team["db"]
    alice = hub.login("alice")
    alice_url = alice.start_server()
    bob_url = hub.login("bob").start_server()

    # ---- alice's Bell in a real kernel; bob can't read or cancel it ----------------
    alice_task, alice_kernel = _kernel_runs_alices_bell(hub, alice_url)
    bob_token, _ = hub.create_token("bob", note="drives bob's kernel")
    bob_kernel = RemoteKernel(bob_url, bob_token)
    probe = json.loads(bob_kernel.run(BOB_PROBE % alice_task))
    assert probe == {"url": api.removesuffix("qtaskdist/api/"), "get": 404, "cancel": 404}
    assert _rows(db) == [("alice", "bell")]
    _browser_signs_in_to_the_service(alice, hub, alice_task)
    assert _rows(db) == [("alice", "bell")]

    # ---- no user process holds a secret of the data side ----------------------------
    secrets = _secrets(hub, team)
    kernel_env = json.loads(
        alice_kernel.run("import os, json; print(json.dumps(dict(os.environ)))")
    )
    _assert_no_secret(kernel_env, secrets, "alice's kernel os.environ")
    assert kernel_env["QTASKDIST_SERVICE_URL"] == api.removesuffix("qtaskdist/api/")
    procs = _user_processes(hub)
    assert len(procs) >= 4, procs  # two servers, two kernels
    for p in procs:
        _assert_no_secret(_environ(p.pid), secrets, f"pid {p.pid} {p.cmdline()[:3]}")

    # ---- refused (403 / 404), nothing written ----------------------------------
    alice_token, _ = hub.create_token("alice", note="refusals")
    bell = simulate_spec(BELL_QASM2, name="refused")
    as_bob = {"Authorization": f"token {bob_token}"}
    r = httpx.post(api + "tasks", json={**bell, "owner": "alice"}, headers=as_bob)
    assert r.status_code == 403 and r.json()["field"] == "owner", r.text
    batch = {"tasks": [{**bell, "owner": "alice"}]}
    r = httpx.post(api + "tasks/batch", json=batch, headers=as_bob)
    assert r.status_code == 403 and r.json()["field"] == "tasks.0.owner", r.text
    for header in ("X-Forwarded-User", "X-Remote-User", "X-Qtaskdist-Owner"):
        r = httpx.get(api + f"tasks/{alice_task}", headers={**as_bob, header: "alice"})
        assert r.status_code == 404, (header, r.text)
    r = httpx.get(api + "tasks", params={"owner": "alice"}, headers=as_bob)
    assert r.status_code == 403 and r.json()["field"] == "owner", r.text
    revoked, revoked_id = hub.create_token("alice", note="to revoke")
    assert httpx.get(api + "tasks/counts", headers={"Authorization": f"token {revoked}"}).is_success
    hub.revoke_token("alice", revoked_id)
    time.sleep(AUTH_CACHE_S + 0.5)  # the service reuses a hub answer this long
    for headers in (
        {"Authorization": f"token {revoked}"},
        {"Authorization": f"token {alice_token[:-4]}abcd"},
        {"Authorization": "token " + "f" * 32},
        {},
    ):
        r = httpx.post(api + "tasks", json=bell, headers=headers)
        assert r.status_code == 403, (headers, r.status_code, r.text)
        assert httpx.get(api + f"tasks/{alice_task}", headers=headers).status_code == 403
    in_url = httpx.post(api + "tasks", params={"token": alice_token}, json=bell)
    assert in_url.status_code == 403, in_url.text  # a token in the URL is never read
    assert _rows(db) == [("alice", "bell")]

    # ---- fleet detail: the hub's admin yes, alice no ---------------------------------
    admin_token, _ = hub.create_token(ADMIN, note="operator")
    ops = httpx.get(api + "health", headers={"Authorization": f"token {admin_token}"}).json()
    assert [w["name"] for w in ops["workers"]] == ["hub-worker"], ops
    mine = httpx.get(api + "health", headers={"Authorization": f"token {alice_token}"}).json()
    assert mine["database"] == {"ok": True} and "workers" not in mine and "streams" not in mine
    alice_kernel.close()
    bob_kernel.close()

    # ---- the hub down: 503 auth_unavailable, nothing written --------------------------
    fresh, _ = hub.create_token("alice", note="never seen by the service")
    team["orphans"] += psutil.Process(hub.proc.pid).children(recursive=True)
    hub.proc.kill()  # the hub alone; its service and proxy stay
    hub.proc.wait(10)
    r = httpx.post(api + "tasks", json=bell, headers={"Authorization": f"token {fresh}"})
    assert r.status_code == 503 and r.json()["error"] == "auth_unavailable", r.text
    assert "127.0.0.1" not in r.text
    assert _rows(db) == [("alice", "bell")]


def _submit(api: str, token: str, name: str) -> str:
    spec = simulate_spec(BELL_QASM2, name=name)
    r = httpx.post(api + "tasks", json=spec, headers={"Authorization": f"token {token}"})
    assert r.status_code == 201, r.text
    return str(r.json()["task_id"])


@pytest.mark.browser
@pytest.mark.parametrize("team", [False], indirect=True)  # no worker: tasks stay queued
def test_alices_live_table_in_chromium(chromium_context: Any, team: dict[str, Any]) -> None:
    from tests.e2e.test_browser import TABLE, Notebook
    from tests.fixtures.browser import ARTIFACTS, wait_until, write_notebook

    hub, api = team["hub"], team["api"]
    alice_token, _ = hub.create_token("alice", note="submits")
    bob_token, _ = hub.create_token("bob", note="submits")
    mine = [_submit(api, alice_token, f"alice-{i}") for i in range(2)]
    bobs = _submit(api, bob_token, "bob-0")
    alice_url = hub.start_server("alice")
    write_notebook(hub.dir / "home" / "alice" / "table.ipynb")

    shots = ARTIFACTS.parent / "hub-browser"
    shots.mkdir(parents=True, exist_ok=True)
    page = chromium_context.pages[0] if chromium_context.pages else chromium_context.new_page()
    event_requests: list[str] = []
    page.on(
        "request",
        lambda r: (
            event_requests.append(r.resource_type) if "/qtaskdist/api/events" in r.url else None
        ),
    )
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", hub.user_password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(lambda url: "/hub/login" not in url, timeout=60_000)
    page.goto(f"{alice_url}lab/tree/table.ipynb")  # at the hub's public URL, via hub OAuth
    nb = Notebook(page, shots)
    nb.wait_kernel_idle(120)
    nb.run_cell(0, "%load_ext qtaskdist_jupyter")
    nb.wait_cell_done(0)
    nb.run_cell(1, "%qtask table")
    nb.wait_cell_done(1)
    nb.wait_rows(2, timeout_s=60)
    ids = nb.rows().evaluate_all("rs => rs.map(r => r.dataset.taskId)")
    assert sorted(ids) == sorted(mine) and bobs not in ids
    assert "bob-0" not in page.locator(TABLE).inner_text()
    nb.shot("alice-table")

    # New tasks arrive by the event stream (forwarded by alice's server): hers, not bob's.
    bobs2 = _submit(api, bob_token, "bob-1")
    mine.append(_submit(api, alice_token, "alice-2"))
    nb.wait_rows(3, timeout_s=60)
    ids = nb.rows().evaluate_all("rs => rs.map(r => r.dataset.taskId)")
    assert sorted(ids) == sorted(mine) and bobs2 not in ids
    assert "eventsource" in event_requests, event_requests

    page.locator(f'{TABLE} tr.qtd-row[data-task-id="{mine[0]}"] button.qtd-cancel').click()
    page.wait_for_selector(
        f'{TABLE} tr.qtd-row[data-task-id="{mine[0]}"][data-status="cancelled"]', timeout=30_000
    )
    nb.shot("alice-cancelled")
    as_alice = {"Authorization": f"token {alice_token}"}
    assert httpx.get(api + f"tasks/{mine[0]}", headers=as_alice).json()["status"] == "cancelled"
    assert httpx.get(api + f"tasks/{mine[1]}", headers=as_alice).json()["status"] != "cancelled"
    as_bob = {"Authorization": f"token {bob_token}"}
    assert httpx.get(api + f"tasks/{bobs}", headers=as_bob).json()["status"] != "cancelled"

    # The JupyterLab panel and status-bar item reach the service the same way (alice's
    # server, her hub credentials): her three tasks, none of bob's; two of hers queued.
    page.locator("#jp-main-statusbar .qtd-statusbar").click()
    panel_rows = page.locator("#qtaskdist-tasks .qtd-root tr.qtd-row")
    wait_until(lambda: panel_rows.count() == len(mine), 60, "alice's tasks in the panel")
    ids = panel_rows.evaluate_all("rs => rs.map(r => r.dataset.taskId)")
    assert sorted(ids) == sorted(mine) and bobs not in ids and bobs2 not in ids
    status = page.locator("#jp-main-statusbar .qtd-statusbar")
    want = "qtask: 0 running · 2 queued"
    wait_until(lambda: status.inner_text() == want, 30, f"the status bar to read {want!r}")
    assert "qtd-down" not in (status.get_attribute("class") or "")
    nb.shot("alice-panel")
