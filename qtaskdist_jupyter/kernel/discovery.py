"""Which Jupyter server runs this kernel: the one that started it (parent pid), else the
one that knows this kernel's id (its connection file names it)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import urljoin

import httpx

from qtaskdist_jupyter.core.jsontypes import JsonObject

HOW_TO_FIX = (
    "Start JupyterLab / jupyter server with the extension enabled "
    "(`jupyter server extension enable qtaskdist_server`) and open this notebook from it, "
    "or pass Client(url='http://host:8888/', token='...')."
)


def _connection_file() -> str | None:
    try:
        # Only inside an ipykernel; Client also runs in plain Python, without ipykernel.
        from ipykernel.connect import get_connection_file

        return str(get_connection_file())
    except Exception:  # noqa: BLE001 - not inside an ipykernel: nothing to match
        return None


def _running_servers(runtime_dirs: Iterable[str | None]) -> list[JsonObject]:
    """The server info files (``url``, ``token``, ``pid`` …) in these runtime dirs, one per
    server pid."""
    # Heavy (all of jupyter_server), and needed only when no URL was given or exported.
    from jupyter_server.serverapp import list_running_servers

    seen: dict[object, JsonObject] = {}
    for d in runtime_dirs:
        for info in list_running_servers(d):
            seen.setdefault(info.get("pid"), info)
    return list(seen.values())


def find_server(connection_file: str | None = None) -> tuple[str, str] | None:
    """The (url, token) of the Jupyter server that runs this kernel, or None."""
    cf = connection_file or _connection_file()
    dirs = [os.path.dirname(cf)] if cf else []
    servers = _running_servers([*dirs, None])
    ppid = os.getppid()
    for info in servers:
        if info.get("pid") == ppid:
            return str(info["url"]), str(info.get("token") or "")
    m = re.match(r"kernel-(.+)\.json$", os.path.basename(cf or ""))
    if not m:
        return None
    for info in servers:
        url, token = str(info["url"]), str(info.get("token") or "")
        headers = {"Authorization": f"token {token}"} if token else {}
        try:
            r = httpx.get(urljoin(url, f"api/kernels/{m.group(1)}"), headers=headers, timeout=3)
        except httpx.HTTPError:
            continue
        if r.status_code == 200:
            return url, token
    return None
