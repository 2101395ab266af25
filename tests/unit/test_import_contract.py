"""The import contract of the layout (README "Layout"): arrows point inward to core, and
inside core to the domain.

- ``qtaskdist_jupyter.core`` imports neither the kernel side, the server, the worker, nor
  the notebook / HTTP-client stack, so a worker-only install can use all of it.
- Inside core, the domain (every top-level module of core but the migrations: statuses,
  errors, kinds, schemas, config, budget, …) imports neither the store, the broker, the
  queue facade over them, the circuit codec, the migrations nor the embedded-services
  subsystem (``core/embedded/``: the pair, its leases and watchdog, the ``qtaskdist``
  CLI); the store does not import the broker, the broker does not import the store, and
  neither imports the facade or the subsystem that starts their servers.
- The kernel side imports neither the store, the broker, the queue facade nor the embedded
  services: a notebook reaches them over HTTP only. The live table (``kernel.widget``)
  does not import the handles, which open it: no import cycle.
- The server does not import the broker's wire format (``broker.wire``, ``broker.packing``):
  it gets ``TaskEvent``s from the queue facade (``TaskQueue.events``).
- ``qtaskdist_worker`` imports no Jupyter and no kernel side: a worker node has neither.
- ``qtaskdist_server.api`` (the API layer both hosts share) imports no host: no Jupyter,
  tornado or jupyterhub.
- ``qtaskdist_server.service_host`` (``qtaskdist service``, the team's host) imports no
  Jupyter server and no kernel side: a shared service exposes no kernels or contents. At
  run time (tests/integration/test_import_contract_runtime.py) that covers the handler
  modules it binds (``qtaskdist_server.handlers``, ``.events``, …) too.

Read statically from the source (every ``import`` anywhere in a module, functions and
``if TYPE_CHECKING:`` blocks included; relative imports resolved), so an import that only
runs on some path is caught too. The same contract is checked once for real, in fresh
interpreters, by tests/integration/test_import_contract_runtime.py: that catches what a
third-party import drags in, and takes seconds of imports.
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
# The parts of core that are not the domain: the embedded-services subsystem (core/embedded/:
# the pair, its leases and watchdog, the ``qtaskdist`` CLI), the migrations (they run the
# store and the broker), and the three adapters (store/, broker/, circuits/). The domain is
# what is left: the top-level modules of core but these.
NOT_DOMAIN = {"migrate"}
STORE = "qtaskdist_jupyter.core.store"
BROKER = "qtaskdist_jupyter.core.broker"
# The queue facade over both (core/queue): above the adapters, below the API and the worker.
QUEUE = "qtaskdist_jupyter.core.queue"
ADAPTERS = (STORE, BROKER, QUEUE)
EMBEDDED = "qtaskdist_jupyter.core.embedded"
MIGRATE = "qtaskdist_jupyter.core.migrate"
WIRE_FORMAT = (f"{BROKER}.wire", f"{BROKER}.packing")


def tree(package_dir: Path) -> list[Path]:
    return sorted(package_dir.rglob("*.py"))


def domain_files(root: Path = ROOT) -> list[Path]:
    core = root / "qtaskdist_jupyter" / "core"
    return sorted(p for p in core.glob("*.py") if p.stem not in NOT_DOMAIN)


def contracts(root: Path = ROOT) -> dict[str, tuple[list[Path], tuple[str, ...]]]:
    """Each contract: the files it covers under ``root`` and the modules they must not import."""
    core = root / "qtaskdist_jupyter" / "core"
    kernel = root / "qtaskdist_jupyter" / "kernel"
    server = root / "server_extension" / "qtaskdist_server"
    no_host = (*JUPYTER_STACK, "qtaskdist_jupyter.kernel", "qtaskdist_worker", "devtools")
    return {
        "core": (
            tree(core),
            (*JUPYTER_STACK, "httpx", "tornado", "matplotlib", "qtaskdist_jupyter.kernel")
            + ("qtaskdist_server", "qtaskdist_worker", "devtools"),
        ),
        # The domain runs neither an adapter nor the services the adapters talk to.
        "core-domain": (
            domain_files(root),
            (*ADAPTERS, "qtaskdist_jupyter.core.circuits", EMBEDDED, MIGRATE),
        ),
        # The facade sits above both: neither adapter imports it.
        "core-store": (tree(core / "store"), (BROKER, QUEUE, EMBEDDED)),
        "core-broker": (tree(core / "broker"), (STORE, QUEUE, EMBEDDED)),
        "kernel": (tree(kernel), (*ADAPTERS, EMBEDDED)),
        # The handles open the live table lazily: the table must not import them back.
        "kernel-widget": ([kernel / "widget.py"], ("qtaskdist_jupyter.kernel.handles",)),
        "server-wire": (tree(server), WIRE_FORMAT),
        "worker": (
            tree(root / "worker" / "qtaskdist_worker"),
            (*JUPYTER_STACK, "tornado", "qtaskdist_jupyter.kernel", "qtaskdist_server", "devtools"),
        ),
        # The API layer is shared by the extension and the team service: it knows no host.
        "server-api": (tree(server / "api"), (*no_host, "tornado", "jupyterhub")),
        "service-host": (tree(server / "service_host"), no_host),
    }


CONTRACTS = contracts()
# Where test_each_contract_fails_on_a_planted_violation plants a module breaking it.
PLANTED = {
    "core": "qtaskdist_jupyter/core/embedded/planted.py",
    "core-domain": "qtaskdist_jupyter/core/planted.py",
    "core-store": "qtaskdist_jupyter/core/store/planted.py",
    "core-broker": "qtaskdist_jupyter/core/broker/planted.py",
    "kernel": "qtaskdist_jupyter/kernel/planted.py",
    "kernel-widget": "qtaskdist_jupyter/kernel/widget.py",
    "server-wire": "server_extension/qtaskdist_server/planted.py",
    "worker": "worker/qtaskdist_worker/planted.py",
    "server-api": "server_extension/qtaskdist_server/api/planted.py",
    "service-host": "server_extension/qtaskdist_server/service_host/planted.py",
}
PACKAGES = (
    "qtaskdist_jupyter/core/store",
    "qtaskdist_jupyter/core/broker",
    "qtaskdist_jupyter/core/queue",
    "qtaskdist_jupyter/core/embedded",
    "qtaskdist_jupyter/kernel",
    "server_extension/qtaskdist_server/api",
    "server_extension/qtaskdist_server/service_host",
    "worker/qtaskdist_worker",
)


def module_name(path: Path) -> str:
    """``path``'s dotted module name: its folders up to the first that is no package."""
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def _absolute(path: Path, node: ast.ImportFrom) -> str | None:
    """The module a ``from … import`` names, a relative one resolved against ``path``."""
    if node.level == 0:
        return node.module
    package = module_name(path).split(".")
    if path.stem != "__init__":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base) or None


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module name ``path`` imports (relative ones made absolute), with its line."""
    tree_ = ast.parse(path.read_text(), filename=str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree_):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (module := _absolute(path, node)):
            names.append((node.lineno, module))
            # "from qtaskdist_jupyter import kernel" names a package too
            names += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return names


def violations(files: list[Path], forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    found = []
    for path in files:
        seen: set[int] = set()
        for line, name in imported_names(path):
            if line not in seen and any(name == f or name.startswith(f + ".") for f in forbidden):
                seen.add(line)  # one report per import statement
                found.append(f"{path.relative_to(root).as_posix()}:{line} imports {name}")
    return found


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_source_respects_the_contract(contract: str) -> None:
    files, forbidden = CONTRACTS[contract]
    assert files, f"{contract}: no files (a package moved?)"
    assert violations(files, forbidden) == []


def test_the_domain_is_what_is_left_of_core() -> None:
    names = {p.stem for p in domain_files()}
    assert {"status", "errors", "schemas", "budget", "kinds", "config"} <= names
    assert not names & NOT_DOMAIN
    # The embedded subsystem is a subpackage, so no module of it counts as the domain.
    embedded = {p.stem for p in tree(ROOT / "qtaskdist_jupyter" / "core" / "embedded")}
    assert {"services", "daemons", "leases", "watch", "cli"} <= embedded
    assert not names & {"embedded", "embedded_daemons", "embedded_watch", "leases", "cli"}


def _skeleton(root: Path) -> None:
    """The packages of the layout, empty, under ``root``."""
    for package in PACKAGES:
        folder = root / package
        folder.mkdir(parents=True, exist_ok=True)
        while folder != root and folder.name not in ("server_extension", "worker"):
            (folder / "__init__.py").touch()
            folder = folder.parent
    (root / "qtaskdist_jupyter/kernel/widget.py").touch()


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_each_contract_fails_on_a_planted_violation(contract: str, tmp_path: Path) -> None:
    # A module in the contract's scope importing each forbidden name (in a function, so
    # only a full walk sees it) is reported once per name: the scope reaches it and no
    # name is left out of the check.
    assert set(PLANTED) == set(CONTRACTS), "a new contract needs a planted violation"
    _skeleton(tmp_path)
    _, forbidden = CONTRACTS[contract]
    planted = tmp_path / PLANTED[contract]
    body = "".join(f"    import {name}\n" for name in forbidden)
    planted.write_text(f"def f():\n{body}")
    files, _ = contracts(tmp_path)[contract]
    assert planted in files
    found = violations(files, forbidden, root=tmp_path)
    rel = planted.relative_to(tmp_path).as_posix()
    assert found == [f"{rel}:{i + 2} imports {name}" for i, name in enumerate(forbidden)]


def test_the_embedded_subsystem_may_run_the_adapters(tmp_path: Path) -> None:
    # The domain contract stops at core's top level: core/embedded/ starts the services
    # the store and the broker use, so its imports of them break no contract but "core".
    _skeleton(tmp_path)
    (tmp_path / "qtaskdist_jupyter/core/embedded/cli.py").write_text(
        "from qtaskdist_jupyter.core.store import store\nfrom ..broker import acl\n"
    )
    broken = {
        name
        for name, (files, forbidden) in contracts(tmp_path).items()
        if violations(files, forbidden, root=tmp_path)
    }
    assert broken == set()


def test_the_check_sees_a_nested_violation(tmp_path: Path) -> None:
    # The check must be able to fail: a forbidden import hidden in a function body.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("def f():\n    from IPython.display import display\n")
    (package / "ok.py").write_text("from qtaskdist_jupyter.core import errors\n")
    found = violations(tree(package), CONTRACTS["core"][1], root=tmp_path)
    assert found == ["pkg/mod.py:2 imports IPython.display"]


def test_the_check_resolves_relative_imports(tmp_path: Path) -> None:
    # "from ..broker import wire" inside core/store would otherwise slip past.
    store = tmp_path / "qtaskdist_jupyter" / "core" / "store"
    store.mkdir(parents=True)
    for folder in (store, store.parent, store.parent.parent):
        (folder / "__init__.py").write_text("")
    (store / "mod.py").write_text("from ..broker import wire\nfrom . import engine\n")
    found = violations([store / "mod.py"], ("qtaskdist_jupyter.core.broker",), root=tmp_path)
    assert found == ["qtaskdist_jupyter/core/store/mod.py:1 imports qtaskdist_jupyter.core.broker"]
