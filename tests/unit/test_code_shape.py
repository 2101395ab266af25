"""The size limits of product code (README "Contributing"): a file stays under 401 lines, a
function under 61, and nothing is packed onto one line to meet them (no ``# fmt: skip``).

Product code is the three packages a wheel ships: ``qtaskdist_jupyter``,
``server_extension/qtaskdist_server`` and ``worker/qtaskdist_worker``. A limit is met by
splitting code into modules and functions, which these checks cannot tell from packing, so
the formatter's own escape hatch is banned outright.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = (
    ROOT / "qtaskdist_jupyter",
    ROOT / "server_extension" / "qtaskdist_server",
    ROOT / "worker" / "qtaskdist_worker",
)
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def product_files() -> list[Path]:
    return sorted(path for root in PRODUCT_DIRS for path in root.rglob("*.py"))


def long_files(paths: list[Path], max_lines: int = MAX_FILE_LINES, root: Path = ROOT) -> list[str]:
    """``path: N lines`` for each file longer than ``max_lines``."""
    found = []
    for path in paths:
        count = len(path.read_text().splitlines())
        if count > max_lines:
            found.append(f"{path.relative_to(root)}: {count} lines")
    return found


def long_functions(path: Path, max_lines: int = MAX_FUNCTION_LINES, root: Path = ROOT) -> list[str]:
    """``path:line name: N lines`` for each function over the limit, from its ``def`` line
    to its last (decorators are declarations, e.g. a magic's argument list, not code)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            count = (node.end_lineno or node.lineno) - node.lineno + 1
            if count > max_lines:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {count} lines")
    return found


def fmt_skips(path: Path, root: Path = ROOT) -> list[str]:
    """``path:line`` for each comment that turns the formatter off (``fmt: skip``/``off``)."""
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for token in tokens:
        text = token.string.lstrip("#").strip()
        if token.type == tokenize.COMMENT and text in ("fmt: skip", "fmt: off"):
            found.append(f"{path.relative_to(root)}:{token.start[0]}")
    return found


def test_the_product_files_are_found() -> None:
    # A moved package must not make every check below pass vacuously.
    names = {path.relative_to(ROOT).as_posix() for path in product_files()}
    assert "qtaskdist_jupyter/core/errors.py" in names
    assert "server_extension/qtaskdist_server/application.py" in names
    assert "worker/qtaskdist_worker/worker.py" in names


def test_no_product_file_is_over_the_line_limit() -> None:
    assert long_files(product_files()) == []


def test_no_product_function_is_over_the_line_limit() -> None:
    assert [hit for path in product_files() for hit in long_functions(path)] == []


def test_no_formatter_escape_in_product_code() -> None:
    assert [hit for path in product_files() for hit in fmt_skips(path)] == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    source.write_text(
        "@decorator\ndef f():\n" + body + "\n\ny = [1,  2]  # fmt: skip\n# fmt: off\n"
    )
    assert long_functions(source, root=tmp_path) == ["mod.py:2 f: 61 lines"]
    assert long_functions(source, max_lines=61, root=tmp_path) == []
    assert fmt_skips(source, root=tmp_path) == ["mod.py:65", "mod.py:66"]
    assert long_files([source], max_lines=65, root=tmp_path) == ["mod.py: 66 lines"]
    assert long_files([source], max_lines=66, root=tmp_path) == []
