"""The import contract (tests/unit/test_import_contract.py) checked for real: every module
of ``core`` and of the worker imported in a fresh interpreter, which catches what a
third-party import drags in. Here, not in tests/unit: importing everything (qiskit, Aer,
the QIR toolchain) costs seconds that the fast loop should not pay.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_import_contract import CONTRACTS, ROOT, module_name

# server-wire is an arrow of the source only: the server reaches the wire format through
# the Broker, which loads it.
SOURCE_ONLY = {"server-wire"}
# Absent where the contract's code runs, but imported by a third-party package when it is
# installed: tenacity imports tornado if it can (for its tornado support); a worker node
# installs no tornado. Made unimportable here, so a hard import of it still fails.
ABSENT = {"worker": ["tornado"]}


@pytest.mark.parametrize("contract", sorted(set(CONTRACTS) - SOURCE_ONLY))
def test_importing_every_module_loads_no_forbidden_package(contract: str) -> None:
    files, forbidden = CONTRACTS[contract]
    modules = sorted(
        module_name(p) for p in files if "migrations" not in p.parts and p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {ABSENT.get(contract, [])!r}: sys.modules[m] = None\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if sys.modules[n] is not None and"
        f" (n.split('.')[0] in {list(forbidden)!r}"
        f" or any(n.startswith(f + '.') or n == f for f in {list(forbidden)!r}))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
