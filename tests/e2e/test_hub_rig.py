"""The JupyterHub test rig itself (tests/fixtures/hub.py), end to end and real: the hub,
the Python configurable-http-proxy, SharedPasswordAuthenticator, SimpleLocalProcessSpawner
running this repo's ``jupyterhub-singleuser`` with the qtaskdist extension, and a
hub-managed service, all reached through the proxy's public URL."""

from __future__ import annotations

import sys

from tests.fixtures.hub import HERE, free_port


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
