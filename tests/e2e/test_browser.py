"""The live task table in a real browser: JupyterLab + headless Chromium + a real worker.

One scenario, the way a user meets the table: cells typed and run with Shift+Enter, a
20-circuit sweep that completes while another cell blocks the kernel, a row clicked for
its histogram, a queued task cancelled from its button, then a kernel restart after which
the table still shows (and keeps updating) every task. Screenshots of each step go to
test-artifacts/browser/ (printed, and shown in the pytest summary).

Why the worker is paused: it boots while the page loads, and once it has said hello it is
stopped (SIGSTOP on its process group). The sweep is submitted, the ``time.sleep(15)``
cell starts, and only then does the worker continue (SIGCONT). So every transition to
``running`` and ``completed`` happens while the kernel is busy, and the table can only
learn of it from the server.
The worker serves ``simulate`` only, so a ``convert`` task stays queued until we cancel it:
a deterministic "queued task" without racing a worker.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.backing import redis_url_for
from tests.fixtures.browser import (
    ARTIFACTS,
    api_get,
    api_post,
    pause_process_group,
    resume_process_group,
    start_lab,
    start_worker,
    stop_process_group,
    wait_until,
    worker_alive,
    write_notebook,
)
from tests.fixtures.services import REDIS_DB_BROWSER

pytestmark = pytest.mark.browser

SWEEP_CELL = """%%qtask simulate --shots 256 --seed 11 --sweep theta=0:3.14:20 --name sweep
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
theta = Parameter("theta")
qc = QuantumCircuit(2)
qc.ry(theta, 0)
qc.cx(0, 1)
qc.measure_all()
qc"""

CONVERT_CELL = """%%qtask convert --name waits-for-a-qir-worker
OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;"""

BELL = (
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; '
    "h q[0]; cx q[0],q[1]; measure q -> c;"
)
SLEEP_S = 15


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own, flushed first and last.

    Reserved in conftest (REDIS_DB_BROWSER): the per-test rotation never takes it, and the
    notebook-side session server, whose worker would consume our messages, has another.
    """
    import redis

    url = redis_url_for(REDIS_DB_BROWSER)
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def lab(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Any]:
    server = start_lab(tmp_path / "lab", database_url, redis_url)
    try:
        yield server
    finally:
        server.stop()


class _Summary:
    """Names the screenshots' folder in pytest's terminal summary (the CI log)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        shots = sorted(p.name for p in self.path.glob("*.png"))
        terminalreporter.write_sep("-", "browser test screenshots")
        terminalreporter.write_line(f"{self.path}: {', '.join(shots) or 'none'}")


class Notebook:
    """The JupyterLab page, driven by keyboard like a user, with screenshots per step."""

    def __init__(self, page: Any, shots_dir: Path) -> None:
        self.page = page
        self.shots_dir = shots_dir
        self.n_shots = 0

    def cell(self, i: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(i)

    def prompt(self, i: int) -> str:
        return (self.cell(i).locator(".jp-InputPrompt").inner_text() or "").strip()

    def run_cell(self, i: int, text: str) -> None:
        """Type into cell i (the notebook's last, empty cell) and run it with Shift+Enter."""
        editor = self.cell(i).locator(".cm-content")
        editor.click()
        # insert_text: no per-key auto-indent, which would re-indent pasted lines.
        self.page.keyboard.insert_text(text)
        self.page.keyboard.press("Shift+Enter")
        self.page.wait_for_function(
            "i => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];"
            " return c && /\\[[*0-9]+\\]/.test(c.querySelector('.jp-InputPrompt').textContent); }",
            arg=i,
            timeout=30_000,
        )

    def wait_cell_done(self, i: int, timeout_s: float = 60) -> None:
        self.page.wait_for_function(
            "i => /\\[[0-9]+\\]/.test(document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
            ".querySelector('.jp-InputPrompt').textContent)",
            arg=i,
            timeout=timeout_s * 1000,
        )

    def wait_kernel_idle(self, timeout_s: float) -> None:
        # The status bar says "Idle" only once the kernel's websocket is connected; a run
        # command sent before that is dropped.
        self.page.wait_for_function(
            "() => /Python 3 \\(ipykernel\\) \\| Idle/.test("
            "document.querySelector('#jp-main-statusbar')?.textContent || '')",
            timeout=timeout_s * 1000,
        )

    def rows(self, status: str | None = None) -> Any:
        sel = f"{TABLE} tr.qtd-row" + (f'[data-status="{status}"]' if status else "")
        return self.page.locator(sel)

    def wait_rows(
        self, n: int, status: str | None = None, timeout_s: float = 30, at_least: bool = False
    ) -> None:
        sel = f"{TABLE} tr.qtd-row" + (f'[data-status="{status}"]' if status else "")
        self.page.wait_for_function(
            "([sel, n, atLeast]) => { const k = document.querySelectorAll(sel).length;"
            " return atLeast ? k >= n : k === n; }",
            arg=[sel, n, at_least],
            timeout=timeout_s * 1000,
        )

    def shot(self, name: str) -> Path:
        # The table's top at the top of the notebook panel: counts, batches, rows.
        self.page.evaluate(
            "() => document.querySelector('.qtd-root')?.closest('.jp-Cell')"
            "?.scrollIntoView({block: 'start'})"
        )
        self.n_shots += 1
        path = self.shots_dir / f"{self.n_shots:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path


# The full table (%qtask table); a batch handle's output is a smaller view of it.
TABLE = ".jp-OutputArea .qtd-root:not(.qtd-batch-view):not(.qtd-task-view)"


def h_all_qasm(n: int) -> str:
    """H on every qubit, no measurement: a statevector of 2^n equal amplitudes."""
    gates = "".join(f"h q[{i}];\n" for i in range(n))
    return f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{n}];\n{gates}'


def _row_ids(nb: Notebook, status: str) -> list[str]:
    return list(nb.rows(status).evaluate_all("rs => rs.map(r => r.dataset.taskId)"))


def test_live_table_in_jupyterlab(
    chromium_context: Any,  # first: a missing Chromium skips before Lab starts
    lab: Any,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    request: pytest.FixtureRequest,
) -> None:
    shots_dir = ARTIFACTS
    shots_dir.mkdir(parents=True, exist_ok=True)
    for old in shots_dir.glob("*.png"):
        old.unlink()
    print(f"\nbrowser test screenshots: {shots_dir}")
    if not request.config.pluginmanager.has_plugin("qtd-browser-shots"):
        request.config.pluginmanager.register(_Summary(shots_dir), "qtd-browser-shots")

    write_notebook(lab.root_dir / "test.ipynb")
    page = chromium_context.pages[0] if chromium_context.pages else chromium_context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    api_requests: list[tuple[str, str]] = []
    page.on(
        "request",
        lambda r: (
            api_requests.append((r.resource_type, r.url)) if "/qtaskdist/api/" in r.url else None
        ),
    )
    nb = Notebook(page, shots_dir)
    worker_name = f"browser-test-{os.getpid()}"
    # Boots while the page loads; serves simulate only, so a convert task stays queued.
    worker = start_worker(
        tmp_path,
        database_url,
        redis_url,
        worker_name,
        "--task-types",
        "simulate",
        "--batch-size",
        "2",
    )
    try:
        page.goto(f"{lab.url}lab/tree/test.ipynb?token={lab.token}")
        nb.wait_kernel_idle(60)

        # ---- load the extension, show the table --------------------------------------
        nb.run_cell(0, "%load_ext qtaskdist_jupyter")
        nb.wait_cell_done(0)
        nb.run_cell(1, "%qtask table")
        nb.wait_cell_done(1)
        page.wait_for_selector(f"{TABLE} .qtd-counts .qtd-count", timeout=30_000)
        assert "cannot reach" not in page.locator(f"{TABLE} .qtd-err").inner_text()

        # ---- a 20-circuit sweep and a convert task, the worker paused -------------
        wait_until(lambda: worker_alive(lab, worker_name), 60, "the worker's heartbeat")
        pause_process_group(worker)
        nb.run_cell(2, SWEEP_CELL)
        nb.wait_cell_done(2)
        nb.wait_rows(20, "queued")
        nb.run_cell(3, CONVERT_CELL)
        nb.wait_cell_done(3)
        nb.wait_rows(21, "queued")
        table = page.locator(TABLE)
        convert_row = table.locator("tr.qtd-row", has_text="c_qir_convert")
        assert convert_row.count() == 1
        convert_id = convert_row.get_attribute("data-task-id")
        assert convert_id
        sweep_ids = [t for t in _row_ids(nb, "queued") if t != convert_id]
        assert len(sweep_ids) == 20
        nb.shot("sweep-queued")

        # ---- block the kernel, then let a worker run the sweep ---------------------
        nb.run_cell(4, f"import time; time.sleep({SLEEP_S})")
        assert nb.prompt(4) == "[*]:"
        sleep_started = time.monotonic()
        resume_process_group(worker)
        nb.wait_rows(1, "completed", timeout_s=SLEEP_S, at_least=True)
        nb.shot("completing-while-kernel-busy")
        nb.wait_rows(
            20, "completed", timeout_s=max(1.0, SLEEP_S - 1 - (time.monotonic() - sleep_started))
        )
        # Every completion reached the DOM while the sleep cell still ran.
        assert nb.prompt(4) == "[*]:", "the sleep cell ended before the table caught up"
        assert time.monotonic() - sleep_started < SLEEP_S
        assert sorted(_row_ids(nb, "completed")) == sorted(sweep_ids)
        assert table.locator(".qtd-count.qtd-status-completed").inner_text() == "completed 20"
        # The sweep cell's own output is live too: the table's front end on that batch.
        batch_view = page.locator(".qtd-batch-view")
        assert batch_view.count() == 1
        assert batch_view.locator(".qtd-count.qtd-status-completed").inner_text() == "completed 20"
        assert batch_view.locator(".qtd-counts").inner_text().startswith("20 tasks")
        nb.shot("sweep-completed-kernel-busy")

        # ---- a row's result: the histogram -------------------------------------------
        # sweep[10] (theta ~ pi/2): both outcomes, so the histogram has two bars.
        row = table.locator("tr.qtd-row").filter(
            has=page.locator("td", has_text=re.compile(r"^sweep\[10\]$"))
        )
        row_id = row.get_attribute("data-task-id")
        row.click()
        page.wait_for_selector(f"{TABLE} svg.qtd-hist rect.qtd-hist-bar", timeout=15_000)
        titles = page.locator(f"{TABLE} svg.qtd-hist rect.qtd-hist-bar title").evaluate_all(
            "ts => ts.map(t => t.textContent)"
        )
        shown = {k: int(v) for k, v in (t.split(": ") for t in titles)}
        result = api_get(lab, f"tasks/{row_id}")["result"]
        (point,) = result["results"]
        assert shown == point["counts"], (shown, result)
        assert set(shown) == {"00", "11"} and sum(shown.values()) == 256
        nb.shot("histogram")

        # ---- cancel the queued convert task from its button ---------------------
        assert api_get(lab, f"tasks/{convert_id}")["status"] == "queued"
        table.locator(f'tr.qtd-row[data-task-id="{convert_id}"] button.qtd-cancel').click()
        page.wait_for_selector(
            f'{TABLE} tr.qtd-row[data-task-id="{convert_id}"][data-status="cancelled"]',
            timeout=15_000,
        )
        assert api_get(lab, f"tasks/{convert_id}")["status"] == "cancelled"
        nb.shot("cancelled")

        # ---- restart the kernel: the table stays and keeps updating -----------------
        # While the sleep may still run: users restart to stop a stuck cell.
        page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
        page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel…").first.click()
        # Idle is only proof of a restart after the status bar said "Restarting".
        page.evaluate(
            "() => { const bar = document.querySelector('#jp-main-statusbar');"
            " window.qtdRestartSeen = false;"
            " new MutationObserver(() => { if (/\\| Restarting/.test(bar.textContent))"
            " window.qtdRestartSeen = true; }).observe(bar,"
            " {subtree: true, childList: true, characterData: true}); }"
        )
        page.locator(".jp-Dialog .jp-mod-accept").click()
        page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)
        page.wait_for_function("() => window.qtdRestartSeen", timeout=30_000)
        nb.wait_kernel_idle(30)
        # A fresh kernel: its execution count starts again and `time` is gone.
        nb.run_cell(5, "print('time' in dir())")
        nb.wait_cell_done(5)
        assert nb.prompt(5) == "[1]:"
        assert nb.cell(5).locator(".jp-OutputArea-output").inner_text().strip() == "False"
        nb.wait_rows(21)
        assert len(_row_ids(nb, "completed")) == 20
        assert _row_ids(nb, "cancelled") == [convert_id]
        # A task from elsewhere, after the restart, still shows up and completes.
        late = api_post(
            lab,
            "tasks",
            {
                "task_type": "simulate",
                "enqueue": True,
                "name": "after-restart",
                "payload": {"circuit": BELL, "shots": 100, "seed": 3},
            },
        )
        late_row = f'{TABLE} tr.qtd-row[data-task-id="{late["task_id"]}"]'
        page.wait_for_selector(late_row + '[data-status="completed"]', timeout=30_000)
        # Seen first through its events, then its row fetched once: the name arrives.
        page.wait_for_selector(late_row + ':has-text("after-restart")', timeout=10_000)
        nb.wait_rows(22)
        nb.shot("after-kernel-restart")
        # Filters still work with no kernel behind the widget's model.
        table.locator("select.qtd-filter-status").select_option("cancelled")
        nb.wait_rows(1)
        assert _row_ids(nb, "cancelled") == [convert_id]
        table.locator("select.qtd-filter-status").select_option("")
        nb.wait_rows(22)

        # ---- a large result: its row shows the summary, the array stays on the server --
        qubits = 20
        big = api_post(
            lab,
            "tasks",
            {
                "task_type": "simulate",
                "enqueue": True,
                "name": "big-statevector",
                "payload": {"circuit": h_all_qasm(qubits), "shots": 1, "statevector": True},
            },
        )
        big_row = f'{TABLE} tr.qtd-row[data-task-id="{big["task_id"]}"]'
        page.wait_for_selector(big_row + '[data-status="completed"]', timeout=60_000)
        page.locator(big_row).click()
        summary = page.wait_for_selector(
            f'{TABLE} .qtd-array-summary[data-array="statevector"]', timeout=15_000
        )
        text = summary.inner_text()
        assert f"<c16 [{1 << qubits}]" in text and "16.0 MiB" in text, text
        assert "top: |" in text and text.count("⟩") == 4, text
        nb.shot("large-result-summary")
        # Drawing the row and its summary downloaded no array; lists asked for row fields.
        assert not [u for _k, u in api_requests if "/result/" in u], api_requests
        lists = [u for _k, u in api_requests if re.search(r"/api/tasks\?", u)]
        assert lists and all("fields=" in u for u in lists), lists
        assert table.locator(".qtd-err").text_content() == ""
        errors = [c for c in console if c.startswith("pageerror")]
        assert not errors, errors
        # The table followed the server's events stream itself, as server-sent events.
        assert any(
            kind == "eventsource" and "/qtaskdist/api/events" in url for kind, url in api_requests
        ), api_requests[:20]
    except Exception:
        nb.shot("failure")
        print("browser console:\n" + "\n".join(console[-60:]))
        print("jupyterlab log tail:\n" + lab.tail(60))
        raise
    finally:
        stop_process_group(worker)
    print(f"browser test screenshots: {shots_dir} ({nb.n_shots} PNG)")
