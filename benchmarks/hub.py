"""B3-HUB: B3 through a real JupyterHub: the proxy, then ``qtaskdist service`` as the
hub-managed service of deploy/jupyterhub/jupyterhub_config.py (hub auth: each request's
token resolved through the hub, with the service's short cache).

The hub comes from the test rig (tests/fixtures/hub.py: the Python configurable-http-proxy,
SharedPasswordAuthenticator, users alice and bob); the client is alice with a hub API token
of her own, as a kernel holds ``JUPYTERHUB_API_TOKEN``. The service and the workers share
the benchmark's database and Redis DB, so B3 (through the single-user extension) and
B3-HUB run the same worker, tasks and events code in the same run, one after the other.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.hub import free_port, running_hub

from . import cases
from .env import ROOT, BenchConfig

DEPLOY_CONFIG = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
SERVICE = "qtaskdist"


def _wait_service(api: cases.Api, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if api.http.get("health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the hub's qtaskdist service did not answer in {timeout_s} s")
        time.sleep(0.2)


def b3_hub(cfg: BenchConfig, n: int, worker_args: list[str]) -> dict[str, Any]:
    """B3 with alice's hub token against ``{hub}/services/qtaskdist/qtaskdist/api/``."""
    tmp = Path(tempfile.mkdtemp(prefix="qtd-bench-hub-"))
    env = {
        "QTASKDIST_DATABASE_URL": cfg.database_url,
        "QTASKDIST_REDIS_URL": cfg.redis_url,
        "QTASKDIST_SERVICE_PORT": str(free_port()),
    }
    try:
        with running_hub(tmp / "hub", config_file=DEPLOY_CONFIG, env=env) as hub:
            token, _ = hub.create_token("alice", note="benchmark B3-HUB")
            api = cases.Api(hub.service_url(SERVICE), token)
            try:
                _wait_service(api)
                out = cases.b3(api, cfg, n, worker_args)
            finally:
                api.close()
            out["via"] = f"{hub.url}/services/{SERVICE}/ (proxy → service, hub auth)"
            return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ratio_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The table's B3-HUB rows: its latencies and p50 against B3's (target: at most 2x)."""
    if "B3-HUB" not in r:
        return []
    b, rows = r["B3-HUB"], []
    for way, label in (("sse", "SSE (live table)"), ("long_poll", "long poll (wait)")):
        w = b[way]
        goal = ""
        if "B3" in r:
            goal = f"hub/extension p50 = {w['p50_ms'] / r['B3'][way]['p50_ms']:.2f} (≤ 2)"
        rows.append(
            (
                "B3-HUB",
                f"submit→completed through hub proxy + service, {label}, {b['n']}",
                f"p50 {w['p50_ms']:.1f} / p99 {w['p99_ms']:.1f} ms",
                goal,
            )
        )
    return rows
