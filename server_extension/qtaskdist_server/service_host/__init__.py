"""``qtaskdist service``: the shared API host for a team (no Jupyter server).

The same handlers (``qtaskdist_server.handlers``, …) and the same
:class:`~qtaskdist_server.api.service.TaskService` as the jupyter-server extension, under
``{JUPYTERHUB_SERVICE_PREFIX or /}qtaskdist/api/``, on a plain tornado application: no
kernels, no contents, nothing but the API. This process (and the workers) hold the
PostgreSQL and Redis credentials; users hold only their own token.

- :mod:`.tokens`: static tokens (a file of sha256 hashes → user names);
- :mod:`.hub`: JupyterHub (``HubOAuth``: tokens resolved through the hub, with a short
  cache; browsers by OAuth cookie);
- :mod:`.base`: the handler base both bind the API onto;
- :mod:`.app`: the tornado application, start-up (migrations) and shutdown.
"""
