"""Authentication, ownership, browser (XSRF cookie) requests and kernel discovery."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.parse
import uuid

import pytest
from qtaskdist_server.application import SERVER_URL_ENV, TOKEN_ENV

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import BOB_TOKEN, TwoUserIdentity, set_cookies, simulate_spec

TWO_USERS = {"ServerApp": {"identity_provider_class": TwoUserIdentity}}
BOB = {"Authorization": f"token {BOB_TOKEN}"}

# Every route and verb, with a task id in place of {id}.
ENDPOINTS = [
    ("POST", "tasks"),
    ("GET", "tasks"),
    ("POST", "tasks/batch"),
    ("GET", "tasks/counts"),
    ("GET", "tasks/resolve"),
    ("GET", "tasks/{id}"),
    ("PATCH", "tasks/{id}"),
    ("DELETE", "tasks/{id}"),
    ("POST", "tasks/{id}/enqueue"),
    ("POST", "tasks/{id}/cancel"),
    ("POST", "tasks/{id}/retry"),
    ("GET", "events"),
    ("GET", "health"),
]


@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_users_cannot_see_or_touch_each_others_tasks(api) -> None:
    code, mine = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, name="alice's"))
    assert code == 201 and mine["owner"] == "alice", mine
    tid = mine["task_id"]
    code, start = await api("GET", "events", params={"timeout_s": "0"}, headers=BOB)
    cursor = start["cursor"]

    code, page = await api("GET", "tasks", headers=BOB)
    assert code == 200 and page["tasks"] == []
    code, counts = await api("GET", "tasks/counts", headers=BOB)
    assert sum(counts["counts"].values()) == 0
    for method, path in ENDPOINTS:
        if "{id}" not in path:
            continue
        body = {"name": "bob was here"} if method == "PATCH" else None
        code, err = await api(method, path.format(id=tid), body=body, headers=BOB)
        assert code == 404 and err["error"] == "task_not_found", (method, path, err)

    # Bob's own work is his; alice's task is untouched and her events are not his.
    code, his = await api("POST", "tasks", body=simulate_spec(BELL_QASM2), headers=BOB)
    assert his["owner"] == "bob"
    await api("POST", f"tasks/{tid}/cancel")
    code, got = await api("GET", "events", params={"after": cursor, "timeout_s": "1"}, headers=BOB)
    assert [(e["task_id"], e["status"]) for e in got["events"]] == [(his["task_id"], "pending")]
    code, still = await api("GET", f"tasks/{tid}")
    assert still["name"] == "alice's" and still["status"] == "cancelled"
    code, page = await api("GET", "tasks")
    assert [t["task_id"] for t in page["tasks"]] == [tid]


@pytest.mark.parametrize("qtd_config", [{}, TWO_USERS])
async def test_unauthenticated_requests_get_403(api, qtd_config) -> None:
    tid = str(uuid.uuid4())
    for headers in ({"Authorization": ""}, {"Authorization": "token wrong"}):
        for method, path in ENDPOINTS:
            body = {} if method in ("POST", "PATCH") else None
            code, _ = await api(method, path.format(id=tid), body=body, headers=headers)
            assert code == 403, (headers, method, path, code)


async def test_browser_cookie_and_xsrf(api, jp_fetch, jp_serverapp) -> None:
    """The browser flow: login page → _xsrf cookie; login form → login cookie; then API
    calls with cookies and the X-XSRFToken header, no token."""
    no_token = {"Authorization": ""}
    page = await jp_fetch("login", headers=no_token, raise_error=False)
    jar = set_cookies(page)
    assert "_xsrf" in jar, page.headers
    form = urllib.parse.urlencode(
        {"_xsrf": jar["_xsrf"], "password": jp_serverapp.identity_provider.token}
    )
    login = await jp_fetch(
        "login",
        method="POST",
        body=form,
        headers={**no_token, "Cookie": f"_xsrf={jar['_xsrf']}"},
        follow_redirects=False,
        raise_error=False,
    )
    assert login.code == 302, login.code
    jar.update(set_cookies(login))
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    browser = {**no_token, "Cookie": cookie, "X-XSRFToken": jar["_xsrf"]}

    code, made = await api("POST", "tasks", body=simulate_spec(BELL_QASM2), headers=browser)
    assert code == 201, made
    code, _ = await api(
        "POST", "tasks", body=simulate_spec(BELL_QASM2), headers={**no_token, "Cookie": cookie}
    )
    assert code == 403  # a cookie alone is not enough to change state
    code, page = await api("GET", "tasks", headers={**no_token, "Cookie": cookie})
    assert code == 200 and [t["task_id"] for t in page["tasks"]] == [made["task_id"]]

    # The kernel (token) and the browser (cookie) of one single-user server are one owner.
    code, seen = await api("GET", f"tasks/{made['task_id']}")
    assert code == 200 and seen["owner"] == made["owner"]
    code, err = await api("DELETE", f"tasks/{made['task_id']}", headers=browser)
    assert code == 409  # authenticated and allowed: only the state rule refuses it


async def test_kernels_discover_the_api_from_the_environment(
    jp_serverapp, jp_base_url, http_server_client
) -> None:
    url, token = os.environ[SERVER_URL_ENV], os.environ[TOKEN_ENV]
    assert token == jp_serverapp.identity_provider.token
    assert url.endswith(jp_base_url) and f":{jp_serverapp.port}" in url
    # A child process (as a kernel is) finds and calls the API with what it inherited.
    code = (
        "import json, os, urllib.request\n"
        "u = os.environ['QTASKDIST_SERVER_URL'] + 'qtaskdist/api/health'\n"
        "r = urllib.request.Request(u, headers={'Authorization': "
        "'token ' + os.environ['QTASKDIST_TOKEN']})\n"
        "print(json.dumps(json.load(urllib.request.urlopen(r, timeout=10))))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert json.loads(out)["database"] == {"ok": True}
