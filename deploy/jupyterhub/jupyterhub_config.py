"""JupyterHub configuration for a team on one shared qtaskdist service (docs/deploy-jupyterhub.md).

- ``qtaskdist service`` runs as a hub-managed service at ``/services/qtaskdist/``; it alone
  (with the workers) gets the PostgreSQL and Redis URLs, and it runs the migrations.
- Every user's server and kernels get ``QTASKDIST_SERVICE_URL`` and nothing of the data
  side: they reach the service with the user's own ``JUPYTERHUB_API_TOKEN``.
- Users hold ``access:services!service=qtaskdist`` (the ``user`` role), and so does the
  token of their server (``Spawner.server_token_scopes``), with which it forwards the
  browser's table requests.

Set by the hub's environment (the hub passes none of them on to users' servers):

=================================== =================================================
``QTASKDIST_DATABASE_URL``          PostgreSQL URL, given to the service only
``QTASKDIST_REDIS_URL``             Redis URL, given to the service only
``QTASKDIST_SERVICE_PORT``          where the service listens on 127.0.0.1 (10101)
``QTASKDIST_SERVICE_PUBLIC_URL``    how users' servers and kernels reach it (default
                                    ``http://127.0.0.1:PORT/services/qtaskdist/``)
``QTASKDIST_SERVICE_ADMIN_GROUP``   hub group whose members see fleet detail
                                    (``qtaskdist-operators``); hub admins always do
``QTASKDIST_SERVICE_AUTH_CACHE_S``  how long the service reuses the hub's answer for a
                                    token (10); a revoked token stops within this time
=================================== =================================================

Everything else (authenticator, spawner, proxy, ports) is the site's own; the tests load
this file and then pin those (tests/fixtures/hub_rig_config.py).
"""

import os
import sys

c = get_config()  # noqa: F821 (JupyterHub's config loader provides it)

SERVICE = "qtaskdist"
port = int(os.environ.get("QTASKDIST_SERVICE_PORT", "10101"))
prefix = f"/services/{SERVICE}/"
public_url = os.environ.get("QTASKDIST_SERVICE_PUBLIC_URL") or f"http://127.0.0.1:{port}{prefix}"
admin_group = os.environ.get("QTASKDIST_SERVICE_ADMIN_GROUP", "qtaskdist-operators")
cache_s = os.environ.get("QTASKDIST_SERVICE_AUTH_CACHE_S", "10")

c.JupyterHub.services = [
    {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{port}",
        # `qtaskdist service`, from the hub's Python environment.
        "command": [sys.executable, "-m", "qtaskdist_jupyter.core.embedded.cli", "service"],
        "environment": {
            "DATABASE_URL": os.environ["QTASKDIST_DATABASE_URL"],
            "REDIS_URL": os.environ["QTASKDIST_REDIS_URL"],
            "QTASKDIST_SERVICE_AUTH": "hub",
            "QTASKDIST_SERVICE_ADMIN_GROUP": admin_group,
            "QTASKDIST_SERVICE_AUTH_CACHE_S": os.environ.get(
                "QTASKDIST_SERVICE_AUTH_CACHE_S", "10"
            ),
        },
        "oauth_no_confirm": True,
    }
]
c.JupyterHub.load_groups = {admin_group: {"users": []}}

# Users may use the service; so may the token of their own server.
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]},
]
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={SERVICE}",
]
# What users' servers and kernels get: where the service is. No URL of the data side, no
# password, no service token (the hub passes its own environment on only for env_keep).
c.Spawner.environment = {"QTASKDIST_SERVICE_URL": public_url}
