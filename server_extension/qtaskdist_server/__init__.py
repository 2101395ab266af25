"""qtaskdist's jupyter-server extension: the REST API under ``{base_url}qtaskdist/api/``."""

from __future__ import annotations

from typing import Any

from .application import QtaskdistApp

__all__ = ["QtaskdistApp"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "qtaskdist_server", "app": QtaskdistApp}]
