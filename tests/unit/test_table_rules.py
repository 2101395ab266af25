"""The live table's rules, once for each implementation, over one table of cases.

``TaskTableState`` (Python: ``%qtask list`` and the HTML view) and ``static/table_rules.js``
(the widget in the browser) must merge list pages and events the same way; both run
``table_rules_cases.json``. The JS runs under node; without node the JS half is skipped on
a laptop and fails under CI (``CI=true``), so it cannot go quietly missing there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from qtaskdist_jupyter.kernel.widget import FACTS, STATIC, TaskTableState

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "table_rules_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())["cases"]


def python_outcome(case: dict[str, Any]) -> dict[str, Any]:
    state = TaskTableState()
    for step in case["steps"]:
        if "page" in step:
            state.apply_page(step["page"])
        else:
            state.apply_event(step["event"])
    cells = case.get("cells")
    outcome = {
        "rows": state.rows,
        "missing": sorted(state.missing),
        "cursor": state.cursor,
        "counts": state.counts(),
        "batches": {k: list(v) for k, v in state.batches().items()},
        "visible": [
            [r["task_id"] for r in state.visible(**f, page_size=10_000)[0]]
            for f in case.get("filters", [{}])
        ],
        "cells": [state.cells(state.rows[i], now=cells["now"]) for i in cells["ids"]]
        if cells
        else [],
    }
    return json.loads(json.dumps(outcome))  # the same JSON types as the node side


@cache
def js_outcomes() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node is not installed: the JS rules of the task table go untested")
        pytest.skip("node is not installed (CI=true makes this a failure)")
    script = HERE / "table_rules.mjs"
    proc = subprocess.run(
        [node, str(script), str(STATIC / "table_rules.js"), str(CASES_FILE), json.dumps(FACTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def check(outcome: dict[str, Any], expect: dict[str, Any]) -> None:
    for key, want in expect.items():
        if key == "rows":
            for tid, fields in want.items():
                assert tid in outcome["rows"], f"no row {tid}"
                got = {k: outcome["rows"][tid].get(k) for k in fields}
                assert got == fields, f"row {tid}"
        elif key == "row_ids":
            assert sorted(outcome["rows"]) == sorted(want)
        else:
            assert outcome[key] == want, key


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_python_rules(case: dict[str, Any]) -> None:
    check(python_outcome(case), case["expect"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_js_rules(case: dict[str, Any]) -> None:
    check(js_outcomes()[case["name"]], case["expect"])


def test_the_cases_cover_every_rule() -> None:
    # A case for each: both step kinds, every expectation kind, and every status.
    kinds = {k for c in CASES for k in c["expect"]}
    assert kinds >= {"rows", "row_ids", "missing", "cursor", "counts", "batches"}
    assert kinds >= {"visible", "cells"}
    seen = {s.get("event", {}).get("status") for c in CASES for s in c["steps"]}
    seen |= {t["status"] for c in CASES for s in c["steps"] for t in s.get("page", [])}
    assert seen >= {*FACTS["statuses"], FACTS["deleted"]}
