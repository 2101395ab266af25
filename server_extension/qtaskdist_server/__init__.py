"""qtaskdist's REST API and its two hosts.

- :mod:`.api`: the API layer (service policy, query parameters, listing, fleet health);
  no host, no jupyter_server.
- The jupyter-server extension (:mod:`.application`), the single-user host, under
  ``{base_url}qtaskdist/api/``.

``QtaskdistApp`` is imported on first use, so importing :mod:`.api` does not load
jupyter_server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # for the type checker only: at run time, __getattr__ below loads it
    from .application import QtaskdistApp

__all__ = ["QtaskdistApp"]


def __getattr__(name: str) -> Any:
    if name == "QtaskdistApp":
        from .application import QtaskdistApp

        return QtaskdistApp
    raise AttributeError(name)


class ExtensionPoint(TypedDict):
    """One entry of the extension points jupyter_server loads: a module and its app."""

    module: str
    app: type[QtaskdistApp]


def _jupyter_server_extension_points() -> list[ExtensionPoint]:
    from .application import QtaskdistApp

    return [{"module": "qtaskdist_server", "app": QtaskdistApp}]
