"""The "Quantum tasks" panel in a real browser, with a real worker (issue 26, Must hold):

- two notebooks, each in its own kernel (two browser tabs), submit tasks; the panel of the
  first tab shows both, live;
- a batch is one row of the panel, with a progress bar and a cancel control, and expands
  to its tasks; it is cancelled from that control;
- a task that failed on the worker is retried from the panel: the worker runs it again;
- "insert in notebook" puts a handle under the active cell, and running it shows the task;
- a 20-qubit statevector's detail draws its top basis states as bars that can be seen
  (scaled to the largest, not on a fixed 0-1 axis, where 1e-6 draws nothing).

The worker serves simulate only, so the convert batch stays queued until it is cancelled;
its results are capped at 32 MiB, so a 22-qubit statevector (64 MiB) fails for real, and
fails again when retried. Screenshots go to docs/img/ (tab-1*.png).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_browser import Notebook, h_all_qasm
from tests.e2e.test_browser_lab import AXE, IMG, PANEL, QASM, WCAG_LOW, _contrast_violations
from tests.fixtures.browser import (
    api_get,
    api_post,
    start_lab,
    start_worker,
    stop_process_group,
    wait_until,
    worker_alive,
    write_notebook,
)

pytestmark = pytest.mark.browser

BATCH_CELL = f"""from qtaskdist_jupyter import Client
hb = Client().submit_convert([{QASM!r}] * 3, name="batch-a")"""
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\n'
B_CELL = f"""from qtaskdist_jupyter import Client
hb2 = Client().submit_simulate({BELL + "measure q -> c;"!r}, shots=100, seed=1, name="from-b")"""
MAX_RESULT_BYTES = 32 << 20


@pytest.fixture
def lab(tmp_path: Path, database_url: str, redis_url: str) -> Any:
    server = start_lab(tmp_path / "lab", database_url, redis_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker(
    tmp_path: Path, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    monkeypatch.setenv("QTASKDIST_MAX_RESULT_BYTES", str(MAX_RESULT_BYTES))
    name = f"panel-test-{os.getpid()}"
    proc = start_worker(tmp_path, database_url, redis_url, name, "--task-types", "simulate")
    try:
        yield name
    finally:
        stop_process_group(proc)


def _row(task_id: str, status: str | None = None) -> str:
    sel = f'{PANEL} tr.qtd-row[data-task-id="{task_id}"]'
    return sel + (f'[data-status="{status}"]' if status else "")


# Every control visible, every text legible, at the panel's default width: nothing in the
# panel is wider than its box or reaches past the panel (the counts strip, the filters, the
# rows, the detail and its chart), a status badge reads its whole status, and a name cut
# by the width keeps the whole name in its title. Returns what breaks that.
PANEL_FITS = """(sel) => {
  const root = document.querySelector(sel);
  const panel = root.closest("#qtaskdist-tasks").getBoundingClientRect();
  const bad = [];
  const name = (e) => e.tagName.toLowerCase() + "." + [...e.classList].join(".")
    + (e.dataset.taskId ? "#" + e.dataset.taskId.slice(0, 8) : "");
  const inside = (b, box) => b.left >= box.left - 1 && b.right <= box.right + 1;
  const fits = (e) => {
    if (e.scrollWidth > e.clientWidth + 1) {
      bad.push(`${name(e)} overflows: ${e.scrollWidth} > ${e.clientWidth}`);
    }
    const b = e.getBoundingClientRect();
    if (b.width && !inside(b, panel)) {
      bad.push(`${name(e)} leaves the panel: ${b.left}..${b.right} of ${panel.right}`);
    }
  };
  const parts = [".qtd-counts", ".qtd-controls", ".qtd-controls > *", ".qtd-scroll",
    "tr.qtd-row", "tr.qtd-batch-row", "td.qtd-detail", ".qtd-detail-head",
    ".qtd-detail-head > *", ".qtd-hist-box", ".qtd-array-summary", "button"];
  for (const e of root.querySelectorAll(parts.join(", "))) fits(e);
  fits(root);
  for (const svg of root.querySelectorAll("svg.qtd-hist")) {
    const b = svg.getBoundingClientRect();
    if (!inside(b, svg.parentElement.getBoundingClientRect())) bad.push(`chart cut: ${b.right}`);
  }
  for (const tr of root.querySelectorAll("tr.qtd-row")) {
    const badge = tr.querySelector(".qtd-status");
    const b = badge.getBoundingClientRect();
    const text = badge.textContent;
    if (text !== tr.dataset.status) bad.push(`badge ${text} != ${tr.dataset.status}`);
    if (badge.scrollWidth > badge.clientWidth + 1
        || !inside(b, badge.parentElement.getBoundingClientRect())) {
      bad.push(`badge ${text} cut: ${b.left}..${b.right}`);
    }
    const cell = tr.cells[1];
    if (cell.scrollWidth > cell.clientWidth && cell.title !== cell.textContent) {
      bad.push(`name ${cell.textContent} cut, with no title`);
    }
  }
  for (const e of root.querySelectorAll("button")) {
    if (!inside(e.getBoundingClientRect(), e.closest("td, div").getBoundingClientRect())) {
      bad.push(`button ${e.textContent} cut`);
    }
  }
  return bad;
}"""


def _fits(page: Any) -> None:
    problems = page.evaluate(PANEL_FITS, PANEL)
    assert problems == [], problems


def _shot(page: Any, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"tab-{name}.png"))


def _inside_panel(page: Any, control: Any) -> None:
    """The control is in view in the panel, with no sideways scroll."""
    panel = page.locator("#qtaskdist-tasks").bounding_box()
    box = control.bounding_box()
    assert box is not None and panel is not None
    assert panel["x"] <= box["x"] and box["x"] + box["width"] <= panel["x"] + panel["width"], (
        box,
        panel,
    )


def _named(lab: Any, name: str) -> list[dict[str, Any]]:
    """Tasks named ``name``, or ``name[i]`` in a batch."""
    rows = api_get(lab, "tasks?limit=100")["tasks"]
    return [r for r in rows if (r.get("name") or "").split("[")[0] == name]


def _open_notebook(page: Any, lab: Any, path: str) -> Notebook:
    nb = Notebook(page, IMG)
    page.goto(f"{lab.url}lab/tree/{path}?token={lab.token}")
    nb.wait_kernel_idle(90)
    return nb


def test_the_panel_follows_two_kernels_cancels_retries_and_inserts(
    chromium_context: Any, lab: Any, worker: str
) -> None:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): run scripts/bootstrap.sh")
    write_notebook(lab.root_dir / "a.ipynb")
    write_notebook(lab.root_dir / "b.ipynb")
    page = chromium_context.pages[0] if chromium_context.pages else chromium_context.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    console: list[str] = []
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        _scenario(chromium_context, page, lab, worker)
    except Exception:
        page.screenshot(path=str(lab.root_dir.parent / "failure.png"))
        print("browser console:\n" + "\n".join(console[-40:]))
        print("jupyterlab log tail:\n" + lab.tail(60))
        raise
    assert not console, console


def _scenario(ctx: Any, page: Any, lab: Any, worker: str) -> None:
    # ---- two notebooks, two kernels, one panel ----------------------------------------
    nb_a = _open_notebook(page, lab, "a.ipynb")
    nb_a.run_cell(0, BATCH_CELL)
    nb_a.wait_cell_done(0)
    page_b = ctx.new_page()
    nb_b = _open_notebook(page_b, lab, "b.ipynb")
    nb_b.run_cell(0, B_CELL)
    nb_b.wait_cell_done(0)
    auth = {"Authorization": f"token {lab.token}"}
    kernels = httpx.get(lab.url + "api/kernels", headers=auth, timeout=30).json()
    assert len(kernels) == 2, kernels
    batch = [r["task_id"] for r in _named(lab, "batch-a")]
    (from_b,) = [r["task_id"] for r in _named(lab, "from-b")]
    assert len(batch) == 3
    page.bring_to_front()
    page.locator("#jp-main-statusbar .qtd-statusbar").click()  # opens the panel
    page.wait_for_selector(PANEL, timeout=15_000)
    # The batch is one row, with its progress; a click expands it to its tasks.
    (batch_id,) = {r["batch_id"] for r in _named(lab, "batch-a")}
    group = page.locator(f'{PANEL} tr.qtd-batch-row[data-batch-id="{batch_id}"]')
    group.wait_for(timeout=30_000)
    wait_until(lambda: "batch-a (3)" in group.inner_text(), 30, "the batch row's name")
    assert "0/3" in group.inner_text()
    assert page.locator(_row(batch[0])).count() == 0  # folded
    group.locator("td").nth(1).click()
    for tid in batch:
        page.wait_for_selector(_row(tid, "queued"), timeout=30_000)
    wait_until(lambda: worker_alive(lab, worker), 90, "the worker's heartbeat")
    page.wait_for_selector(_row(from_b, "completed"), timeout=90_000)  # live, from kernel B
    _fits(page)
    _shot(page, "10-panel-two-kernels")

    # ---- the batch's full id: in its row's title, and its first 8 characters filter ----
    assert batch_id in (group.locator("td").nth(1).get_attribute("title") or "")
    page.locator(f"{PANEL} input.qtd-filter-batch").fill(batch_id[:8])
    page.locator(f"{PANEL} input.qtd-filter-batch").press("Enter")
    wait_until(lambda: page.locator(_row(from_b)).count() == 0, 10, "the batch filter")
    assert all(page.locator(_row(tid)).count() == 1 for tid in batch)
    page.locator(f"{PANEL} input.qtd-filter-batch").fill("")
    page.locator(f"{PANEL} input.qtd-filter-batch").press("Enter")
    page.wait_for_selector(_row(from_b), timeout=10_000)

    # ---- cancel the batch from the panel ----------------------------------------------
    _inside_panel(page, group.locator("button.qtd-cancel-batch"))
    group.locator("button.qtd-cancel-batch").click()
    for tid in batch:
        page.wait_for_selector(_row(tid, "cancelled"), timeout=30_000)
    page.wait_for_function(
        "sel => /3\\/3/.test(document.querySelector(sel)?.textContent || '')",
        arg=f'{PANEL} tr.qtd-batch-row[data-batch-id="{batch_id}"]',
        timeout=15_000,
    )
    assert group.locator("button.qtd-cancel-batch").count() == 0  # nothing left to cancel
    assert {r["status"] for r in _named(lab, "batch-a")} == {"cancelled"}
    _shot(page, "11-panel-batch-cancelled")

    # ---- a task fails on the worker; retry it from the panel --------------------------
    big = {"circuit": h_all_qasm(22), "shots": 1, "statevector": True}
    body = {"task_type": "simulate", "enqueue": True, "payload": big}  # no name
    failing = api_post(lab, "tasks", body)["task_id"]
    page.wait_for_selector(_row(failing, "failed"), timeout=120_000)
    # The panel hides the id column: a task with no name goes by its id's start.
    assert page.locator(_row(failing)).locator("td").nth(1).inner_text() == failing[:8]
    first = api_get(lab, f"tasks/{failing}")
    assert "QTASKDIST_MAX_RESULT_BYTES" in first["error"], first["error"]
    _inside_panel(page, page.locator(f"{_row(failing)} button.qtd-retry"))
    page.locator(f"{_row(failing)} button.qtd-retry").click()
    wait_until(
        lambda: api_get(lab, f"tasks/{failing}")["attempt"] > first["attempt"],
        120,
        "the retried task's next attempt",
    )
    page.wait_for_selector(_row(failing, "failed"), timeout=120_000)
    again = api_get(lab, f"tasks/{failing}")
    assert again["status"] == "failed" and again["attempt"] == first["attempt"] + 1, again
    _shot(page, "12-panel-retried")

    # ---- a detail beside its row, "insert in notebook", and run the handle ------------
    page.locator(_row(from_b)).locator("td").nth(1).click()
    detail = page.locator(f"{PANEL} tr.qtd-detail-row")
    detail.locator("svg.qtd-hist rect.qtd-hist-bar").first.wait_for(timeout=15_000)
    # The panel shows id, name, status and actions; the type, attempt and times are here.
    head = detail.locator(".qtd-detail-head").inner_text()
    assert "simulate" in head and "attempt 1" in head and "run time" in head, head
    assert from_b in head, head  # the whole task id, to copy
    nb_a.cell(1).locator(".cm-content").click()  # the active cell: the empty one under 0
    page.locator(f"{PANEL} tr.qtd-detail-row button.qtd-insert").click()
    inserted = nb_a.cell(2).locator(".cm-content")
    inserted.wait_for(timeout=10_000)
    assert f'Client().handle("{from_b}")' in inserted.inner_text()
    inserted.click()
    page.keyboard.press("Shift+Enter")
    nb_a.wait_cell_done(2)
    view = nb_a.cell(2).locator(f'.qtd-task-view tr.qtd-row[data-task-id="{from_b}"]')
    view.wait_for(timeout=30_000)
    wait_until(lambda: view.get_attribute("data-status") == "completed", 30, "the handle's row")
    _shot(page, "13-panel-insert-and-run")

    # ---- a 20-qubit statevector: its top states drawn as visible bars -----------------
    sv = {"circuit": h_all_qasm(20), "shots": 1, "statevector": True}
    body = {"task_type": "simulate", "enqueue": True, "name": "sv20", "payload": sv}
    sv20 = api_post(lab, "tasks", body)["task_id"]
    page.wait_for_selector(_row(sv20, "completed"), timeout=120_000)
    page.locator(_row(sv20)).locator("td").nth(1).click()
    chart = page.locator(f"{PANEL} tr.qtd-detail-row .qtd-hist-box")
    chart.locator("rect.qtd-hist-bar").first.wait_for(timeout=15_000)
    assert "top 8 of 1048576 basis states" in chart.inner_text()
    heights = chart.locator("rect.qtd-hist-bar").evaluate_all(
        "rs => rs.map(r => r.getBoundingClientRect().height)"
    )
    # 2^20 equal amplitudes: every probability is 2^-20, every bar the full height.
    assert len(heights) == 8 and min(heights) >= 100, heights
    chart.scroll_into_view_if_needed()
    _shot(page, "14-panel-statevector-20q")

    # ---- dark theme, 900 px: the panel's batch row and the chart's detail are legible --
    page.set_viewport_size({"width": 900, "height": 900})
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=15_000)
    assert group.is_visible() and chart.is_visible()
    _inside_panel(page, page.locator(f"{_row(failing)} button.qtd-retry"))
    _inside_panel(page, page.locator(f"{_row(failing)} .qtd-status"))
    chart.scroll_into_view_if_needed()
    _fits(page)
    # The chart is drawn to the panel's width: its 8 bars side by side, none cut off.
    svg = chart.locator("svg.qtd-hist").bounding_box()
    panel = page.locator("#qtaskdist-tasks").bounding_box()
    assert svg is not None and panel is not None
    assert svg["x"] + svg["width"] <= panel["x"] + panel["width"], (svg, panel)
    violations = _contrast_violations(page) + page.evaluate(WCAG_LOW)
    _shot(page, "15-panel-dark-900px")
    assert violations == [], violations
