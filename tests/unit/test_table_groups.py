"""The panel's batch rows (issue 26, Deliver 4): ``groupRows`` of table_rules.js, run under
node. A batch is one item (its name, finished, total) at its first task's place; its tasks
follow only when it is expanded; a lone task, or a batch of one, is a row of its own."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from qtaskdist_jupyter.kernel.widget import FACTS, STATIC

SCRIPT = """
const rules = await import("data:text/javascript;base64," + process.argv[1]);
const [rows, expanded, facts] = JSON.parse(process.argv[2]);
const out = rules.groupRows(rows, new Set(expanded), rules.readFacts(facts));
process.stdout.write(JSON.stringify(out.map((i) => i.batch
  ? ["batch", i.batch, i.name, i.done, i.total] : ["task", i.row.task_id, i.in_batch || null])));
"""

ROWS = [
    {"task_id": "t1", "name": "solo", "task_type": "simulate", "status": "queued"},
    *(
        {"task_id": f"s{i}", "name": f"sweep[{i}]", "batch_id": "B", "task_type": "simulate",
         "status": s}
        for i, s in enumerate(["completed", "failed", "queued"])
    ),
    {"task_id": "one", "name": "only[0]", "batch_id": "C", "status": "queued"},
    {"task_id": "t2", "name": "later", "status": "cancelled"},
]  # fmt: skip


def group(expanded: list[str]) -> list[Any]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node is not installed: the panel's batch rows go untested")
        pytest.skip("node is not installed (CI=true makes this a failure)")
    src = base64.b64encode((STATIC / "table_rules.js").read_bytes()).decode()
    proc = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, src, json.dumps([ROWS, expanded, FACTS])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def test_a_batch_is_one_row_with_its_progress() -> None:
    assert group([]) == [
        ["task", "t1", None],
        ["batch", "B", "sweep", 2, 3],
        ["task", "one", None],
        ["task", "t2", None],
    ]


def test_an_expanded_batch_lists_its_tasks_under_it() -> None:
    assert group(["B"]) == [
        ["task", "t1", None],
        ["batch", "B", "sweep", 2, 3],
        ["task", "s0", "B"],
        ["task", "s1", "B"],
        ["task", "s2", "B"],
        ["task", "one", None],
        ["task", "t2", None],
    ]
