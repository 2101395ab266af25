"""The import contract of the layout (ARCHITECTURE.md "Layout"): arrows point inward to core.

- ``qtaskdist_jupyter.core`` imports neither the kernel side, the server, the worker, nor
  the notebook / HTTP-client stack, so a worker-only install can use all of it.
- ``qtaskdist_worker`` imports no Jupyter and no kernel side: a worker node has neither.
- ``qtaskdist_server.api`` (the API layer both hosts share) imports no host: no Jupyter,
  tornado or jupyterhub.
- ``qtaskdist_server.service_host`` (``qtaskdist service``, the team's host) imports no
  Jupyter server and no kernel side: a shared service exposes no kernels or contents. At
  run time (tests/integration/test_import_contract_runtime.py) that covers the handler
  modules it binds (``qtaskdist_server.handlers``, ``.events``, …) too.

Read statically from the source (every ``import`` anywhere in a module, functions included),
so an import that only runs on some path is caught too. The same contract is checked once
for real, in fresh interpreters, by tests/integration/test_import_contract_runtime.py: that
catches what a third-party import drags in, and takes seconds of imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JUPYTER_STACK = (
    "IPython",
    "ipykernel",
    "ipywidgets",
    "anywidget",
    "jupyter_server",
    "jupyter_client",
)
CONTRACTS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "core": (
        ROOT / "qtaskdist_jupyter" / "core",
        (
            *JUPYTER_STACK,
            "httpx",
            "tornado",
            "matplotlib",
            "qtaskdist_jupyter.kernel",
            "qtaskdist_server",
            "qtaskdist_worker",
            "devtools",
        ),
    ),
    "worker": (
        ROOT / "worker" / "qtaskdist_worker",
        (*JUPYTER_STACK, "tornado", "qtaskdist_jupyter.kernel", "qtaskdist_server", "devtools"),
    ),
    # The API layer is shared by the extension and the team service: it knows no host.
    "server-api": (
        ROOT / "server_extension" / "qtaskdist_server" / "api",
        (
            *JUPYTER_STACK,
            "tornado",
            "jupyterhub",
            "qtaskdist_jupyter.kernel",
            "qtaskdist_worker",
            "devtools",
        ),
    ),
    "service-host": (
        ROOT / "server_extension" / "qtaskdist_server" / "service_host",
        (*JUPYTER_STACK, "qtaskdist_jupyter.kernel", "qtaskdist_worker", "devtools"),
    ),
}


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every absolute module name ``path`` imports, with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
            # "from qtaskdist_jupyter import kernel" names a package too
            names += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return names


def violations(package_dir: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        seen: set[int] = set()
        for line, name in imported_names(path):
            if line not in seen and any(name == f or name.startswith(f + ".") for f in forbidden):
                seen.add(line)  # one report per import statement
                found.append(f"{path.relative_to(package_dir.parent)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_source_respects_the_contract(contract: str) -> None:
    package_dir, forbidden = CONTRACTS[contract]
    assert package_dir.is_dir(), package_dir
    assert violations(package_dir, forbidden) == []


def test_the_check_sees_a_nested_violation(tmp_path: Path) -> None:
    # The check must be able to fail: a forbidden import hidden in a function body.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("def f():\n    from IPython.display import display\n")
    (package / "ok.py").write_text("from qtaskdist_jupyter.core import errors\n")
    assert violations(package, CONTRACTS["core"][1]) == ["pkg/mod.py:2 imports IPython.display"]
