"""The import contract (tests/unit/test_import_contract.py) checked for real: every module
of ``core`` and of the worker imported in a fresh interpreter, which catches what a
third-party import drags in. Here, not in tests/unit: importing everything (qiskit, Aer,
the QIR toolchain) costs seconds that the fast loop should not pay.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_import_contract import CONTRACTS, ROOT


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_importing_every_module_loads_no_forbidden_package(contract: str) -> None:
    package_dir, forbidden = CONTRACTS[contract]
    parts = package_dir.relative_to(ROOT).parts
    # the import name: the path below the source root (server_extension/, worker/)
    base = ".".join(parts if parts[0] == "qtaskdist_jupyter" else parts[1:])
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
