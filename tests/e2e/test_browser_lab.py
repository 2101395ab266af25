"""The JupyterLab extension in a real browser: the saved outputs' live renderer, the
"Quantum tasks" panel and status-bar item, and the table's dark theme (issue 26).

No worker runs: the tasks stay queued, so what the page shows is decided by the test.
Tasks come from the notebook's kernel and from the REST API (another client); both must
show, live, in the notebook's table output and in the panel. Then the kernel is shut down
and the page reloaded: the saved outputs draw their tables again, straight from the API,
and a task submitted afterwards appears in them. Last, the dark theme at 900 px wide:
axe-core's color-contrast rule finds no violation in the table, the panel or a detail.
Screenshots go to docs/img/ (tab-*.png).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_browser import Notebook
from tests.fixtures.browser import api_post, start_lab, write_notebook

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "labextension" / "node_modules" / "axe-core" / "axe.min.js"
IMG = ROOT / "docs" / "img"
OUTPUT = ".jp-OutputArea .qtd-root:not(.qtd-batch-view):not(.qtd-task-view)"
PANEL = "#qtaskdist-tasks .qtd-root"
QASM = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nh q[0];\n'
CONVERT = {"task_type": "c_qir_convert", "payload": {"circuit": QASM}, "enqueue": True}
KERNEL_CELL = f"""from qtaskdist_jupyter import Client
h = Client().submit_convert({QASM!r}, name="from-kernel")"""


@pytest.fixture
def lab(tmp_path: Path, database_url: str, redis_url: str) -> Any:
    server = start_lab(tmp_path / "lab", database_url, redis_url)
    try:
        yield server
    finally:
        server.stop()


def _rows(page: Any, root: str) -> set[str]:
    return set(
        page.locator(f"{root} tr.qtd-row").evaluate_all("rs => rs.map(r => r.dataset.taskId)")
    )


def _wait_rows(page: Any, root: str, ids: set[str], timeout_s: float = 30) -> None:
    page.wait_for_function(
        "([root, ids]) => ids.every(i =>"
        ' document.querySelector(`${root} tr.qtd-row[data-task-id="${i}"]`))',
        arg=[root, sorted(ids)],
        timeout=timeout_s * 1000,
    )


def _shot(page: Any, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"tab-{name}.png"))


def _contrast_violations(page: Any) -> list[Any]:
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE))
    return list(
        page.evaluate(
            """async () => {
          const r = await axe.run({include: [[".qtd-root"]]},
            {runOnly: {type: "rule", values: ["color-contrast"]}});
          return r.violations.flatMap(v => v.nodes.map(
            n => n.target.join(" ") + ": " + n.failureSummary));
        }"""
        )
    )


def test_outputs_stay_live_with_no_kernel_and_the_panel_lists_every_task(
    chromium_context: Any, lab: Any
) -> None:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): run scripts/bootstrap.sh")
    write_notebook(lab.root_dir / "test.ipynb")
    page = chromium_context.pages[0] if chromium_context.pages else chromium_context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        _scenario(page, lab)
    except Exception:
        page.screenshot(path=str(lab.root_dir.parent / "failure.png"))
        print("browser console:\n" + "\n".join(console[-40:]))
        print(f"screenshot: {lab.root_dir.parent / 'failure.png'}")
        raise


def _scenario(page: Any, lab: Any) -> None:
    nb = Notebook(page, IMG)
    page.goto(f"{lab.url}lab/tree/test.ipynb?token={lab.token}")
    nb.wait_kernel_idle(60)
    nb.run_cell(0, "%load_ext qtaskdist_jupyter")
    nb.wait_cell_done(0)
    nb.run_cell(1, "%qtask table")
    nb.wait_cell_done(1)
    page.wait_for_selector(f"{OUTPUT} .qtd-counts .qtd-count", timeout=30_000)
    nb.run_cell(2, KERNEL_CELL)
    nb.wait_cell_done(2)
    from_api = api_post(lab, "tasks", {**CONVERT, "name": "from-rest"})["task_id"]
    page.locator("#jp-main-statusbar .qtd-statusbar").click()  # opens the panel
    page.wait_for_selector(PANEL, timeout=15_000)
    from_kernel = page.locator(f"{OUTPUT} tr.qtd-row", has_text="from-kernel")
    from_kernel.wait_for(timeout=30_000)
    kernel_id = from_kernel.get_attribute("data-task-id")
    both = {kernel_id, from_api}
    _wait_rows(page, OUTPUT, both)
    _wait_rows(page, PANEL, both)
    status = page.locator("#jp-main-statusbar .qtd-statusbar").inner_text()
    assert status == "qtask: 0 running · 2 queued", status
    _shot(page, "01-panel-and-output")

    # Saved, the kernel shut down, the page reloaded: the outputs are live again.
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1000)
    auth = {"Authorization": f"token {lab.token}"}
    for k in httpx.get(lab.url + "api/kernels", headers=auth, timeout=30).json():
        httpx.delete(lab.url + f"api/kernels/{k['id']}", headers=auth, timeout=30)
    page.reload()
    page.wait_for_selector(OUTPUT, timeout=60_000)
    _wait_rows(page, OUTPUT, both)
    assert "model not found" not in page.locator(".jp-Notebook").inner_text()
    later = api_post(lab, "tasks", {**CONVERT, "name": "after-reload"})["task_id"]
    _wait_rows(page, OUTPUT, {later})  # live: from the events, with no kernel behind it
    _wait_rows(page, PANEL, {later})
    _shot(page, "02-reloaded-live")

    # Dark theme, 900 px wide: every control visible, every text legible.
    page.set_viewport_size({"width": 900, "height": 900})
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=15_000)
    page.locator(f'{OUTPUT} tr.qtd-row[data-task-id="{later}"] td').nth(1).click()
    page.wait_for_selector(f"{OUTPUT} tr.qtd-detail-row", timeout=15_000)
    # The detail sits right under its row.
    row_box = page.locator(f'{OUTPUT} tr.qtd-row[data-task-id="{later}"]').bounding_box()
    detail_box = page.locator(f"{OUTPUT} tr.qtd-detail-row").bounding_box()
    assert abs(detail_box["y"] - (row_box["y"] + row_box["height"])) < 2
    cancel = page.locator(f'{OUTPUT} tr.qtd-row[data-task-id="{later}"] button.qtd-cancel')
    box = cancel.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 900, box
    violations = _contrast_violations(page)
    _shot(page, "03-dark-900px")
    assert violations == [], violations
