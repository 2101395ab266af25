"""The import contract of the layout (ARCHITECTURE.md "Layout"): arrows point inward to core.

- ``qtaskdist_jupyter.core`` imports neither the kernel side, the server, the worker, nor
  the notebook / HTTP-client stack, so a worker-only install can use all of it.
- ``qtaskdist_worker`` imports no Jupyter and no kernel side: a worker node has neither.

Read statically from the source (every ``import`` anywhere in a module, functions included),
so an import that only runs on some path is caught too; then once for real in a fresh
interpreter, which catches what a third-party import drags in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_importing_every_module_loads_no_forbidden_package(contract: str) -> None:
    package_dir, forbidden = CONTRACTS[contract]
    top = package_dir.relative_to(ROOT).parts[-1]
    base = "qtaskdist_jupyter.core" if contract == "core" else top
    modules = sorted(
        ".".join((base, *p.relative_to(package_dir).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for p in package_dir.rglob("*.py")
        if "migrations" not in p.parts and p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {list(forbidden)!r}"
        f" or any(n.startswith(f + '.') or n == f for f in {list(forbidden)!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
