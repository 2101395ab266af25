"""The JupyterHub test rig itself (tests/fixtures/hub.py), end to end and real: the hub,
the Python configurable-http-proxy, SharedPasswordAuthenticator, SimpleLocalProcessSpawner
running this repo's ``jupyterhub-singleuser`` with the qtaskdist extension, and a
hub-managed service, all reached through the proxy's public URL."""

from __future__ import annotations

import sys

from tests.fixtures.hub import HERE, RIG_SERVICE, _rig_facts, _write_config, free_port


def test_hub_rig_logs_in_spawns_routes_and_isolates(hub_factory, database_url, redis_url):
    echo_port = free_port()
    hub = hub_factory(
        services=[
            {
                "name": "echo",
                "command": [sys.executable, str(HERE / "hub_echo_service.py")],
                "url": f"http://127.0.0.1:{echo_port}",
            }
        ],
        # A hub user may use a service only with its access scope.
        load_roles=[
            {
                "name": "echo-users",
                "scopes": ["access:services!service=echo"],
                "users": ["alice", "bob"],
            }
        ],
        spawner_environment={
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "QTASKDIST_LOCAL_WORKERS": "0",
        },
    )
    alice = hub.login("alice")
    alice_url = alice.start_server()
    assert alice_url == f"{hub.url}/user/alice/"

    # Alice's browser reaches her server through the proxy (the OAuth dance included),
    # and the server runs the qtaskdist extension.
    status = alice.get(f"{alice_url}api/status")
    assert status.status_code == 200, status.text
    assert "last_activity" in status.json()
    health = alice.get(f"{alice_url}qtaskdist/api/health")
    assert health.status_code == 200, health.text
    # The proxy streams: the live table's server-sent events arrive while the response
    # is still open (a proxy that buffers whole responses never delivers the first line).
    sse = {"Accept": "text/event-stream"}
    with alice.client.stream("GET", f"{alice_url}qtaskdist/api/events", headers=sse) as r:
        assert r.status_code == 200
        assert next(r.iter_lines()).startswith("retry:")

    # The managed service is up behind /services/echo/ and resolves a hub token to its user.
    token, token_id = hub.create_token("alice", note="rig smoke")
    echo = hub.client_get(hub.service_url("echo"), token=token)
    assert echo.status_code == 200, echo.text
    assert echo.json() == {"service": "echo", "user": "alice"}
    assert hub.client_get(hub.service_url("echo")).json()["user"] is None

    # A token revoked through the hub API no longer resolves.
    assert hub.api("GET", "user", token=token).json()["name"] == "alice"
    hub.revoke_token("alice", token_id)
    assert hub.api("GET", "user", token=token).status_code == 403

    # Bob's cookie does not open alice's server, and a wrong password logs nobody in.
    bob = hub.login("bob")
    assert bob.open(alice_url).status_code == 403
    denied = bob.get(f"{alice_url}api/status")
    assert denied.status_code == 403, (denied.status_code, denied.url)
    assert "last_activity" not in denied.text
    try:
        hub.login("bob", password="not-the-password")
    except AssertionError as exc:
        assert "refused" in str(exc)
    else:
        raise AssertionError("a wrong password logged bob in")


def test_rig_config_adds_to_the_callers_file_and_pins_the_rest(tmp_path, monkeypatch) -> None:
    """What JupyterHub loads (traitlets' own loader, no hub started): the caller's services,
    roles and single-user environment stay, the rig's are added, the rig's pins win."""
    from traitlets.config.loader import PyFileConfigLoader

    caller = tmp_path / "site_config.py"
    caller.write_text(
        "c = get_config()  # noqa: F821\n"
        "c.JupyterHub.services = [{'name': 'site', 'url': 'http://127.0.0.1:1'}]\n"
        "c.JupyterHub.load_roles = [{'name': 'user', 'scopes': ['self']}]\n"
        "c.Spawner.environment = {'SITE': '1'}\n"
        "c.JupyterHub.authenticator_class = 'pam'\n"
    )
    facts = _rig_facts(
        tmp_path,
        services=[{"name": "extra", "url": "http://127.0.0.1:2"}],
        load_roles=[{"name": "extra-role", "scopes": []}],
        spawner_environment={"EXTRA": "2"},
        singleuser_args=[],
    )
    path = _write_config(tmp_path, facts, caller)
    monkeypatch.setenv("QTD_HUB_RIG", str(tmp_path / "rig.json"))
    c = PyFileConfigLoader(path.name, path=str(tmp_path)).load_config()

    services = [s["name"] for s in _value(c.JupyterHub.services, [])]
    assert services == ["site", RIG_SERVICE, "extra"]
    roles = [r["name"] for r in _value(c.JupyterHub.load_roles, [])]
    assert roles == ["user", RIG_SERVICE, "extra-role"]
    assert _value(c.Spawner.environment, {}) == {"SITE": "1", "EXTRA": "2"}
    assert c.JupyterHub.authenticator_class.endswith("SharedPasswordAuthenticator")
    assert c.JupyterHub.bind_url == f"http://127.0.0.1:{facts['port']}"


def _value(v, empty):
    """A merged config value: plain, or lazy (extend / update) over the trait's default."""
    from traitlets.config.loader import LazyConfigValue

    return v.get_value(empty) if isinstance(v, LazyConfigValue) else v
