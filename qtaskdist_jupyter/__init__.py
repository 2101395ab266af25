"""qtaskdist-jupyter: send quantum circuit jobs from Jupyter to a worker fleet.

Importing this package stays cheap on purpose: a notebook that only does
``%load_ext qtaskdist_jupyter`` must not pay for the server, the worker, Aer or
matplotlib. :class:`Client` and the handles load on first use (module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BatchHandle", "Client", "TaskHandle", "TaskTable", "load_ipython_extension"]

if TYPE_CHECKING:  # pragma: no cover
    from qtaskdist_jupyter.kernel.client import BatchHandle, Client, TaskHandle
    from qtaskdist_jupyter.kernel.widget import TaskTable

_LAZY = {
    "Client": "kernel.client",
    "TaskHandle": "kernel.client",
    "BatchHandle": "kernel.client",
    "TaskTable": "kernel.widget",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qtaskdist_jupyter' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The JupyterLab extension (labextension/, built into ``labextension`` here): what
    ``jupyter labextension develop`` links (scripts/bootstrap.sh)."""
    return [{"src": "labextension", "dest": "qtaskdist-jupyter"}]


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext qtaskdist_jupyter``: register the ``%qtask`` / ``%%qtask`` magics."""
    from qtaskdist_jupyter.kernel.magics import QtaskMagics  # IPython: see the docstring

    ip.register_magics(QtaskMagics)


def unload_ipython_extension(ip: Any) -> None:
    # IPython has no public 'unregister'; dropping our entries is what it would do.
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("qtask", None)
