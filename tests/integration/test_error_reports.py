"""Errors for users, tracebacks for operators (issue 14): a failed task says what went
wrong in one line with no host, path or URL, and carries an error id; the traceback is
in the worker's log under that id, never in the row."""

from __future__ import annotations

import json

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.fake_qbraid import FakeQbraid, sdk_env
from tests.fixtures.workers import rows, run_worker, submit


async def test_failed_tasks_carry_an_error_id_and_the_log_the_traceback(
    service, settings, tmp_path
) -> None:
    with FakeQbraid(api_key="k") as fake:
        (tmp_path / ".qbraid").mkdir()
        env = {**sdk_env(fake, tmp_path), "QBRAID_API_KEY": "wrong-key"}
        sim = await submit(service, "simulate", [{"circuit": BELL_QASM2, "device": "GPU"}])
        remote = await submit(
            service,
            "backend_run",
            [{"circuit": BELL_QASM2, "device_id": "qbraid:qbraid:sim:qir-sv"}],
        )
        proc = run_worker(settings, env=env)
        fake_url = fake.url
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    for row in await rows(service, sim + remote):
        assert row["status"] == "failed", row
        meta = row["meta_data"]
        assert "traceback" not in meta and meta["error_id"], meta
        text = json.dumps({"error": row["error"], "meta_data": meta})
        for leak in ("Traceback", "/home", "/work", "/usr/", "127.0.0.1", "http://", fake_url):
            assert leak not in text, (leak, text)
        # The operator finds the whole story in the worker's log by the task's error id.
        at = log.index(f"error {meta['error_id']}")
        assert "Traceback (most recent call last)" in log[at : at + 20_000], log[at : at + 500]
    assert "API key" in (await rows(service, remote))[0]["error"]
