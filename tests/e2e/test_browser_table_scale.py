"""The table at scale in Chromium (issue 26, point 6): 20,000 tasks, then 2,000 of them
finishing in a burst.

What is measured is the front end itself, so the page serves it an API from memory (a
``fetch`` that answers list pages of 1,000 rows, an ``EventSource`` that delivers the
events one per task, as a real stream does); the module is the one every host runs
(``TaskTable._esm``). Recorded in ``test-artifacts/table-scale.json`` and in
benchmarks/README.md ("The table in the browser").
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from qtaskdist_jupyter.kernel.live_view import COLORS, FACTS
from qtaskdist_jupyter.kernel.widget import STATIC, esm_bundle
from tests.fixtures.browser import ARTIFACTS

pytestmark = pytest.mark.browser

N_TASKS = 20_000
BURST = 2_000

FAKE_API = """
const N = %(n)d, PAGE = 1000, T0 = Date.now() / 1000 - 600;
const row = (i) => ({task_id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
  name: `sweep[${i}]`, task_type: "simulate", status: i < 4000 ? "queued" : "completed",
  attempt: 1, batch_id: "b0000000-0000-4000-8000-000000000000", created_at: T0 + i / 1000,
  queued_at: T0 + i / 1000, started_at: i < 4000 ? null : T0 + 300,
  finished_at: i < 4000 ? null : T0 + 310, updated_at: T0 + 310, error: null});
window.fetch = async (url) => {
  const u = new URL(url, "http://page.invalid/");
  let body;
  if (u.pathname.endsWith("/events")) body = {cursor: "0-0", events: []};
  else {
    const start = +(u.searchParams.get("cursor") || 0);
    const tasks = Array.from({length: Math.min(PAGE, N - start)}, (_, k) => row(start + k));
    body = {tasks, next_cursor: start + PAGE < N ? String(start + PAGE) : null};
  }
  return {ok: true, json: async () => body};
};
window.EventSource = class {
  constructor() { window.__source = this; setTimeout(() => this.onopen && this.onopen(), 0); }
  addEventListener(_name, f) { this.handler = f; }
  close() {}
};
"""


# The panel's way too: the 20,000 tasks are one batch, one row, expanded before the burst.
@pytest.mark.parametrize("grouped", [False, True], ids=["table", "panel"])
def test_20000_tasks_render_fast_and_a_2000_task_burst_has_no_long_task(
    chromium_context: Any, grouped: bool
) -> None:
    page = chromium_context.pages[0] if chromium_context.pages else chromium_context.new_page()
    # A page on an origin of its own (about:blank has no cookies to read), served here.
    html = "<html><body><div id='t' style='width:1000px'></div></body></html>"
    page.route(
        "http://qtd.test/**", lambda route: route.fulfill(body=html, content_type="text/html")
    )
    page.goto("http://qtd.test/")
    page.add_style_tag(content=(STATIC / "task_table.css").read_text())
    page.add_script_tag(content=FAKE_API % {"n": N_TASKS})
    module = esm_bundle() + "\nwindow.__qtd = { mountTable, plainModel };\n"
    page.add_script_tag(content=module, type="module")
    page.wait_for_function("() => !!window.__qtd")
    first_render_ms = page.evaluate(
        """([facts, colors, n, grouped]) => new Promise((done) => {
          const t0 = performance.now();
          const model = window.__qtd.plainModel({facts, colors, api_url: "/qtaskdist/api/",
            group_batches: grouped});
          window.__stop = window.__qtd.mountTable(document.getElementById("t"), model);
          const check = () => {
            const head = document.querySelector(".qtd-counts span");
            const first = document.querySelector(grouped ? "tr.qtd-batch-row" : "tr.qtd-row");
            if (head && head.textContent === `${n} tasks` && first)
              done(performance.now() - t0);
            else requestAnimationFrame(check);
          };
          check();
        })""",
        [FACTS, COLORS, N_TASKS, grouped],
    )
    if grouped:
        page.locator("tr.qtd-batch-row td").nth(1).click()
        page.wait_for_selector("tr.qtd-row.qtd-in-batch", timeout=10_000)
    in_dom = page.locator("tr.qtd-row").count()
    longest_ms = page.evaluate(
        """(burst) => new Promise((done) => {
          const seen = [];
          const obs = new PerformanceObserver(
            (l) => seen.push(...l.getEntries().map(e => e.duration)));
          obs.observe({type: "longtask"});
          const src = window.__source;
          for (let i = 0; i < burst; i++) {
            const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
            setTimeout(() => src.handler({data: JSON.stringify({task_id: id, status: "completed",
              attempt: 1, task_type: "simulate", batch_id: "b0000000-0000-4000-8000-000000000000",
              ts: Date.now() / 1000, id: `${i + 1}-0`})}), 0);
          }
          const wait = () => {
            const q = document.querySelector(".qtd-count.qtd-status-queued");
            if (q && q.textContent === "queued 2000")
              setTimeout(() => { obs.disconnect(); done(Math.max(0, ...seen)); }, 300);
            else setTimeout(wait, 20);
          };
          wait();
        })""",
        BURST,
    )
    record = {
        "host": "panel (batch rows)" if grouped else "table",
        "tasks": N_TASKS,
        "first_render_ms": round(first_render_ms, 1),
        "rows_in_dom": in_dom,
        "burst": BURST,
        "longest_task_ms": round(longest_ms, 1),
    }
    ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
    name = "table-scale-panel.json" if grouped else "table-scale.json"
    (ARTIFACTS.parent / name).write_text(json.dumps(record, indent=1))
    print(f"\ntable at scale: {record}")
    assert in_dom < 100, in_dom  # only the rows in view
    assert first_render_ms < 1000, record
    assert longest_ms <= 100, record
