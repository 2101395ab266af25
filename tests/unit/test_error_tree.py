"""errors.py's docstring draws the exception tree; it must stay the real one, and every
error class of the three packages must be in it (no error defined outside the tree)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from qtaskdist_jupyter.core import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qtaskdist_jupyter", "server_extension/qtaskdist_server", "worker/qtaskdist_worker")


def drawn_tree() -> dict[str, str]:
    """class name -> parent name, as drawn (indentation: 4 characters a level)."""
    parents: dict[str, str] = {}
    stack: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        m = re.match(r"^\s{4}([│├└─\s]*)([A-Z]\w+)\b", line)
        if not m:
            continue
        depth = len(m.group(1)) // 4
        del stack[depth:]
        if stack:
            parents[m.group(2)] = stack[-1]
        stack.append(m.group(2))
    return parents


def real_tree() -> dict[str, str]:
    out: dict[str, str] = {}
    todo = [errors.QtaskdistError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                out[sub.__name__] = cls.__name__
                todo.append(sub)
    return out


def test_the_docstring_draws_the_real_tree() -> None:
    assert drawn_tree() == real_tree()


def test_no_error_class_outside_errors_py() -> None:
    names = set(real_tree()) | {"QtaskdistError"}
    outside = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == Path(errors.__file__):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases = {
                        b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                        for b in node.bases
                    }
                    if bases & names:
                        outside.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert outside == []
