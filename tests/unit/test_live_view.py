"""The MIME bundle that keeps a saved output live in JupyterLab (issue 26, point 1)."""

from __future__ import annotations

from types import SimpleNamespace

from qtaskdist_jupyter.kernel.handles import TaskHandle
from qtaskdist_jupyter.kernel.live_view import FACTS, TASKS_MIME
from qtaskdist_jupyter.kernel.widget import TaskTable


def test_a_task_handle_carries_its_task_and_the_api_path_but_no_token() -> None:
    client = SimpleNamespace(url="https://hub.example/user/ada/?token=secret")
    out = TaskHandle(client, "t-1", {"status": "queued"})._repr_mimebundle_()
    data = out[0] if isinstance(out, tuple) else out
    bundle = data[TASKS_MIME]
    assert bundle["task_id"] == "t-1"
    assert bundle["api_url"] == "/user/ada/qtaskdist/api/"
    assert bundle["facts"] == FACTS
    assert "secret" not in repr(bundle)
    assert "text/html" in data  # the snapshot stays for hosts without the renderer
    # Live where widgets render (Notebook 7, VS Code-style hosts): the table of this task.
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "qtask: " not in data["text/plain"]  # the handle's repr, not the widget's


def test_a_task_handles_widget_shows_that_task_only(monkeypatch) -> None:
    made: list[TaskTable] = []
    real = TaskTable.for_client.__func__  # type: ignore[attr-defined]

    def recorded(cls: type[TaskTable], client: object, **kw: object) -> TaskTable:
        made.append(real(cls, client, **kw))
        return made[-1]

    monkeypatch.setattr(TaskTable, "for_client", classmethod(recorded))
    client = SimpleNamespace(url="http://127.0.0.1:8888/")
    out = TaskHandle(client, "t-2", {"status": "queued"})._repr_mimebundle_()
    data = out[0] if isinstance(out, tuple) else out
    (table,) = made
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == table.model_id
    assert (table.task_id, table.page_size, table.base_url) == ("t-2", 1, "/")


def test_the_table_carries_its_filter_beside_the_widget() -> None:
    table = TaskTable(base_url="/user/ada/", status="failed", batch_id="b-1")
    data, _meta = table._repr_mimebundle_()
    bundle = data[TASKS_MIME]
    assert (bundle["status"], bundle["batch_id"], bundle["task_id"]) == ("failed", "b-1", "")
    assert bundle["api_url"] == "/user/ada/qtaskdist/api/"
    assert "application/vnd.jupyter.widget-view+json" in data


def test_the_facts_print_with_no_third_party_package() -> None:
    # The lab extension's build runs `python -m qtaskdist_jupyter.kernel.live_view` in a
    # build environment that has none of our dependencies (numpy, pydantic, …): -S keeps
    # site-packages off the path, so an import of one fails here as it fails there.
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-S", "-m", "qtaskdist_jupyter.kernel.live_view"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root)},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    printed = json.loads(out.stdout)
    assert printed["facts"] == json.loads(json.dumps(FACTS))
    assert printed["colors"]["waiting"]
