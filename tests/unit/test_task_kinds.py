"""The task types' one home (core/kinds.py, docs/task-kinds.md): their names appear in no
other product code, and every side reads the specs.

The name check reads the product packages' syntax trees: a string constant (docstrings
and comments are prose and are left out) may not *be* a type name anywhere but in
core/kinds.py, and may not *contain* one as a word either, except a name that is also a
verb of the magic (``simulate``: ``%%qtask simulate`` and help texts such as
"simulate / convert / run" name the verbs, which are the specs' ``verb`` too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from qtaskdist_jupyter.core.kinds import BACKEND, CONVERT, KINDS, SIMULATE, TASK_TYPES

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = (
    ROOT / "qtaskdist_jupyter",
    ROOT / "server_extension" / "qtaskdist_server",
    ROOT / "worker" / "qtaskdist_worker",
)
HOME = ROOT / "qtaskdist_jupyter" / "core" / "kinds.py"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of ``tree``'s module, classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def name_literals(source: str, names: tuple[str, ...], verbs: set[str]) -> list[tuple[int, str]]:
    """(line, text) of each string constant of ``source`` that is one of ``names``, or holds
    one that is no verb as a word. Docstrings and comments don't count."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    words = [n for n in names if n not in verbs]
    word = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b") if words else None
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in skip:
            continue
        if node.value in names or (word is not None and word.search(node.value)):
            found.append((node.lineno, node.value))
    return found


def test_the_type_names_appear_only_in_the_specs() -> None:
    verbs = {k.verb for k in KINDS.values()}
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for root in PRODUCT_DIRS
        for path in sorted(root.rglob("*.py"))
        if path != HOME
        for line, text in name_literals(path.read_text(), TASK_TYPES, verbs)
    ]
    assert offenders == []


def test_the_check_catches_a_literal_and_spares_prose() -> None:
    names, verbs = ("simulate", "backend_run"), {"simulate"}
    source = '''"""A backend_run docstring."""
# a comment on backend_run
x = "simulate"
y = f"stream:{x}"
z = "backend_run tasks polled at once"
w = "simulate / convert / run"
'''
    assert name_literals(source, names, verbs) == [
        (3, "simulate"),
        (5, "backend_run tasks polled at once"),
    ]


def test_the_built_in_kinds() -> None:
    assert TASK_TYPES == ("simulate", "c_qir_convert", "backend_run")
    assert [k.verb for k in KINDS.values()] == ["simulate", "convert", "run"]
    assert [k.lane for k in (SIMULATE, CONVERT, BACKEND)] == ["pool", "pool", "backend"]
    assert {k.stream for k in KINDS.values()} == {"simulate", "c_qir", "backend"}
