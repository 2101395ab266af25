"""Client: discovery, error mapping, handles, waiting — against a real server + worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from qtaskdist_jupyter.core.errors import ApiError, ServerNotFound, TaskFailed, WaitTimeout
from qtaskdist_jupyter.kernel.client import Client, find_server
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.notebook import NbServer


def test_lazy_import_stays_light() -> None:
    code = (
        "import sys, qtaskdist_jupyter as q\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('qiskit', 'qiskit_aer', 'qtaskdist_server', 'qtaskdist_worker', 'httpx', "
        "'matplotlib', 'sqlalchemy', 'anywidget')]\n"
        "assert not heavy, heavy\n"
        "assert q.Client.__name__ == 'Client'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_discovery_order(nb_server: NbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKDIST_SERVER_URL", nb_server.url)
    monkeypatch.setenv("QTASKDIST_TOKEN", nb_server.token)
    assert Client().url == nb_server.url and Client().health()["database"]["ok"]
    explicit = Client("http://127.0.0.1:9", "x")
    assert explicit.url == "http://127.0.0.1:9/" and explicit.token == "x"
    monkeypatch.delenv("QTASKDIST_SERVER_URL")
    with pytest.raises(ServerNotFound, match="jupyter server extension enable"):
        Client()


def test_find_server_matches_a_kernel_of_that_server(
    nb_server: NbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel's connection file → the server that knows that kernel (list_running_servers)."""
    kernel = httpx.post(nb_server.url + "api/kernels", headers=nb_server.headers, json={}).json()
    try:
        monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(nb_server.runtime_dir))
        cf = nb_server.runtime_dir / f"kernel-{kernel['id']}.json"
        assert find_server(str(cf)) == (nb_server.url, nb_server.token)
        assert find_server(str(nb_server.runtime_dir / "kernel-nope.json")) is None
    finally:
        httpx.delete(nb_server.url + f"api/kernels/{kernel['id']}", headers=nb_server.headers)


def test_real_kernel_finds_the_server_and_runs_a_magic(nb_server: NbServer) -> None:
    """A kernel the server started: the exported env, then list_running_servers without it."""
    from jupyter_client import BlockingKernelClient

    kernel = httpx.post(nb_server.url + "api/kernels", headers=nb_server.headers, json={}).json()
    kc = BlockingKernelClient()
    kc.load_connection_file(str(nb_server.runtime_dir / f"kernel-{kernel['id']}.json"))
    kc.start_channels(hb=False)  # a fresh hb channel reads as 'dead'
    outputs: list[dict[str, Any]] = []
    try:
        kc.wait_for_ready(timeout=120)
        code = (
            "import os\n%load_ext qtaskdist_jupyter\n"
            "from qtaskdist_jupyter import Client\n"
            "env_url = Client().url\n"
            "del os.environ['QTASKDIST_SERVER_URL']\n"
            "print(json.dumps([env_url, Client().url]))\n"
        )
        reply = kc.execute_interactive(
            "import json\n" + code, timeout=120, output_hook=outputs.append
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        cell = f"%%qtask simulate --shots 64 --seed 3 --out h --wait\n{BELL_QASM2}"
        reply = kc.execute_interactive(cell, timeout=180, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        reply = kc.execute_interactive(
            "print(json.dumps(h.counts()))", timeout=60, output_hook=outputs.append
        )
    finally:
        kc.stop_channels()
        httpx.delete(nb_server.url + f"api/kernels/{kernel['id']}", headers=nb_server.headers)
    texts = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
    env_url, found_url = json.loads(next(t for t in texts if t.startswith('["')))
    assert env_url == nb_server.url and found_url == nb_server.url
    assert any("image/png" in m["content"].get("data", {}) for m in outputs)  # histogram
    counts = json.loads(texts[-1])
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 64


def test_error_mapping(nb_server: NbServer, nb_client: Client) -> None:
    with pytest.raises(ApiError) as err:
        nb_client.get("00000000-0000-0000-0000-000000000000")
    assert err.value.status == 404 and err.value.error == "task_not_found"
    with pytest.raises(ApiError) as err:
        nb_client.submit_simulate("OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n")
    assert err.value.status == 422 and "line 3" in err.value.message
    with pytest.raises(ApiError, match="refused the token"):
        Client(nb_server.url, "wrong-token").health()
    with pytest.raises(ServerNotFound, match="not reachable"):
        Client("http://127.0.0.1:9/", "").health()


def test_handles_wait_cancel_and_fail(nb_server: NbServer, nb_client: Client) -> None:
    parked = nb_client.submit_simulate(BELL_QASM2, shots=10, enqueue=False, name="parked")
    assert parked.status == "pending"
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match="timed out after 1 s"):
        parked.result(timeout_s=1)
    assert time.monotonic() - t0 < 10
    assert parked.cancel()["status"] == "cancelled"
    with pytest.raises(TaskFailed, match="cancelled"):
        parked.result(timeout_s=5)
    assert "cancelled" in parked._repr_html_()

    batch = nb_client.submit_simulate([BELL_QASM2] * 3, shots=16, name="trio")
    counts = batch.wait(timeout_s=120, progress=False)
    assert counts == {"completed": 3}
    assert [sum(c.values()) for c in batch.counts()] == [16, 16, 16]
    shown = batch._repr_html_()
    assert "3 tasks" in shown and "3/3 finished, as of " in shown  # a dated snapshot
    names = {r["name"] for r in nb_client.tasks(batch_id=batch.batch_id)}
    assert names == {"trio[0]", "trio[1]", "trio[2]"}

    # A failure surfaces as TaskFailed with the worker's error line.
    bad = nb_client.submit_simulate(
        'OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float[64] a;\nqubit q;\nrx(a) q;\n',
        shots=8,
        max_retries=0,
    )
    with pytest.raises(TaskFailed, match="failed: .*parameter"):
        bad.result(timeout_s=120)


def test_submit_convert_sends_bindings_and_the_verify_mode(nb_client: Client) -> None:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    theta = Parameter("theta")
    qc = QuantumCircuit(1, 1)
    qc.rx(theta, 0)
    qc.measure(0, 0)
    points = [{"theta": 0.25}, {"theta": 1.5}]
    h = nb_client.submit_convert(qc, parameter_bindings=points, verify="static")
    result = h.result(timeout_s=60)
    assert [m["parameters"] for m in result["modules"]] == points
    assert [m["verification"]["status"] for m in result["modules"]] == ["skipped"] * 2
    assert h.refresh()["payload"]["verify"] == "static"
    # One binding as a dict: one module, executed in qir-runner with the seed given.
    one = nb_client.submit_convert(qc, parameter_bindings={"theta": 0.5}, verify_seed=7)
    module = one.result(timeout_s=60)
    assert module["parameters"] == {"theta": 0.5}
    assert module["verification"]["status"] == "matched"
    assert module["verification"]["seed"] == 7
