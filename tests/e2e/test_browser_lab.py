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
import psycopg
import pytest
from psycopg.types.json import Jsonb

from qtaskdist_jupyter.core.config import libpq_url
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
QIR = "; ModuleID = 'bell'\ndefine void @main() #0 {\n  ret void\n}\n"
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


# WCAG 2.x contrast of every visible text in the table, the panel and the details, with
# axe-core's formula: relative luminance L = 0.2126 R + 0.7152 G + 0.0722 B of linearized
# sRGB; ratio (L1 + 0.05) / (L2 + 0.05); AA is 4.5:1, 3:1 for large text (24 px, or 18.66 px
# bold). axe marks text over stacked table backgrounds "incomplete" (needs review) instead
# of judging it, so this check walks the ancestors' backgrounds itself.
WCAG_LOW = """() => {
  const rgba = (c) => {
    const m = c.match(/[\\d.]+/g).map(Number);
    return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
  };
  const over = (fg, bg) => [0, 1, 2].map((i) => fg[i] * fg[3] + bg[i] * (1 - fg[3])).concat(1);
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((bg, c) => over(c, bg), [255, 255, 255, 1]);
  };
  const low = [];
  for (const el of document.querySelectorAll(".qtd-root *")) {
    const own = [...el.childNodes].filter((n) => n.nodeType === 3);
    const text = own.map((n) => n.textContent).join("").trim();
    const box = el.getBoundingClientRect();
    if (!text || !box.width || !box.height || el.closest("svg")) continue;
    const st = getComputedStyle(el);
    if (st.visibility === "hidden" || +st.opacity === 0) continue;
    const bg = background(el), fg = over(rgba(st.color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(st.fontSize), bold = +st.fontWeight >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const what = `${text.slice(0, 40)} (${el.className})`;
    if (ratio < need) low.push(`${what}: ${ratio.toFixed(2)} < ${need}`);
  }
  return low;
}"""


def test_outputs_stay_live_with_no_kernel_and_the_panel_lists_every_task(
    chromium_context: Any, lab: Any, database_url: str
) -> None:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): run scripts/bootstrap.sh")
    write_notebook(lab.root_dir / "test.ipynb")
    page = chromium_context.pages[0] if chromium_context.pages else chromium_context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        _scenario(page, lab, database_url)
    except Exception:
        page.screenshot(path=str(lab.root_dir.parent / "failure.png"))
        print("browser console:\n" + "\n".join(console[-40:]))
        print(f"screenshot: {lab.root_dir.parent / 'failure.png'}")
        raise


def _scenario(page: Any, lab: Any, database_url: str) -> None:
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
    violations = _contrast_violations(page) + page.evaluate(WCAG_LOW)
    _shot(page, "03-dark-900px")
    assert violations == [], violations

    # A failed task's detail (its error and hint, in the error's colour) is legible too.
    _fail_in_the_store(
        database_url, from_api, "observable 'ZZZ' has 3 Pauli factors but the circuit has 1 qubits"
    )
    page.locator(f'{OUTPUT} tr.qtd-row[data-task-id="{from_api}"] td').nth(1).click()
    error = page.locator(f"{OUTPUT} tr.qtd-detail-row .qtd-error")
    error.wait_for(timeout=15_000)
    assert "Pauli factors" in error.inner_text() and "hint:" in error.inner_text()
    violations = _contrast_violations(page) + page.evaluate(WCAG_LOW)
    _shot(page, "04-dark-error-detail")
    assert violations == [], violations

    # A finished conversion's detail: the QIR preview with copy and download.
    _complete_in_the_store(database_url, kernel_id, {"llvm_ir": QIR, "profile": "base"})
    page.locator(f'{OUTPUT} tr.qtd-row[data-task-id="{kernel_id}"] td').nth(1).click()
    page.locator(f"{OUTPUT} tr.qtd-detail-row pre.qtd-qir").wait_for(timeout=15_000)
    link = page.locator(f"{OUTPUT} tr.qtd-detail-row a.qtd-qir-download")
    assert link.get_attribute("download") == "from-kernel.ll"
    downloaded = page.evaluate("h => fetch(h).then(r => r.text())", link.get_attribute("href"))
    assert downloaded == QIR
    assert page.locator(f"{OUTPUT} tr.qtd-detail-row button.qtd-qir-copy").is_visible()
    violations = _contrast_violations(page) + page.evaluate(WCAG_LOW)
    _shot(page, "05-dark-qir-detail")
    assert violations == [], violations


def _complete_in_the_store(database_url: str, task_id: str, result: dict) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE tasks SET status = 'completed', result = %s, finished_at = now(),"
            " updated_at = now() WHERE task_id = %s",
            (Jsonb(result), task_id),
        )


def _fail_in_the_store(database_url: str, task_id: str, error: str) -> None:
    """No worker runs here: the row is failed directly, as a worker's failure leaves it."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE tasks SET status = 'failed', error = %s, finished_at = now(),"
            " updated_at = now() WHERE task_id = %s",
            (error, task_id),
        )
