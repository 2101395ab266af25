"""Large results on the notebook side: a 24-qubit statevector through a real worker,
fetched lazily through the client; summaries drawn without downloading; a live batch
view; the submit-time limit as the user sees it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from qiskit import qasm2
from qiskit_aer import AerSimulator

from qtaskdist_jupyter.core.errors import ApiError
from qtaskdist_jupyter.kernel.lazy_result import LazyResult
from tests.fixtures.circuits import BELL_QASM2

from .test_large_results import phased_qasm


def aer_statevector(qasm: str) -> np.ndarray:
    circ = qasm2.loads(qasm, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    circ.save_statevector()
    sim = AerSimulator(method="statevector")
    return np.asarray(sim.run(circ, shots=1).result().get_statevector())


def test_24_qubit_statevector_equals_in_process_aer(nb_client: Any, capsys) -> None:
    qasm = phased_qasm(24)
    h = nb_client.submit_simulate(qasm, shots=1, statevector=True, method="statevector")
    res = h.result(timeout_s=600)
    assert isinstance(res, LazyResult) and res["counts"] == {}
    ref = res.summary("statevector")
    assert ref is not None and ref["shape"] == [1 << 24] and ref["nbytes"] == 256 << 20
    # Drawing the handle uses the summary in the row; nothing is downloaded for it.
    shown = h._repr_html_()
    assert "statevector" in shown and "256.0 MiB" in shown and "top:" in shown
    sv = res["statevector"]  # now it is fetched (streamed, with a progress bar)
    assert isinstance(sv, np.ndarray) and sv.dtype == np.complex128 and sv.shape == (1 << 24,)
    assert res.summary("statevector") is None  # fetched once, kept
    assert np.allclose(sv, aer_statevector(qasm), atol=1e-9)
    # The same array by name through the client.
    again = nb_client.array(h.task_id, "statevector", progress=False)
    assert np.array_equal(again, sv)


def test_submit_over_the_result_limit_is_refused(nb_client: Any) -> None:
    with pytest.raises(ApiError, match="QTASKDIST_MAX_RESULT_BYTES is 512.0 MiB") as info:
        nb_client.submit_simulate(phased_qasm(26), statevector=True, method="statevector")
    assert info.value.status == 422 and info.value.error == "result_too_large"


def test_list_rows_are_slim_and_batches_still_give_results(nb_client: Any) -> None:
    batch = nb_client.submit_simulate([BELL_QASM2] * 3, shots=32, name="slim")
    batch.wait(timeout_s=120, progress=False)
    rows = nb_client.tasks(batch_id=batch.batch_id)
    assert rows and all("payload" not in r and "result" not in r for r in rows)
    assert [sum(c.values()) for c in batch.counts()] == [32, 32, 32]
    full = nb_client.tasks(batch_id=batch.batch_id, include=("result",))
    assert all(r["result"]["counts"] for r in full)
    # The batch's cell output is the live table's front end, for this batch only.
    data, _meta = batch._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "3 tasks" in data["text/html"]


def test_show_summarizes_a_stored_array_without_downloading_it(
    shell: InteractiveShell, nb_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = nb_client.submit_simulate(phased_qasm(14), shots=1, statevector=True)
    h.wait(timeout_s=120)
    from qtaskdist_jupyter.kernel import lazy_result

    def no_download(*a: Any, **k: Any) -> Any:
        raise AssertionError("%qtask show downloaded an array")

    monkeypatch.setattr(lazy_result, "fetch_array", no_download)
    with capture_output() as cap:
        res = shell.run_cell(f"%qtask show {h.task_id}")
    assert res.error_in_exec is None, cap.stderr
    htmls = " ".join(o.data.get("text/html", "") for o in cap.outputs)
    assert "qtd-array-summary" in htmls and "complex128" not in htmls  # dtype as stored
    assert "&lt;c16 [16384]" in htmls and "256.0 KiB" in htmls
    assert any("image/png" in o.data for o in cap.outputs)  # the top states drawn


def test_stored_counts_come_back_as_the_dict(nb_client: Any) -> None:
    """20,000 shots over 14 uniform qubits: about 11,500 outcomes, stored out of the row;
    the handle draws their summary without downloading, and counts() is the dict Aer gave."""
    qasm = phased_qasm(14, measure=True)
    h = nb_client.submit_simulate(qasm, shots=20_000, seed=11, method="statevector")
    res = h.result(timeout_s=300)
    ref = res.summary("counts")
    assert ref is not None and ref["shots"] == 20_000 and ref["distinct"] > 10_000
    assert "counts" in h._repr_html_()  # the summary line, from the row
    got = h.counts()
    circ = qasm2.loads(qasm, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    want = AerSimulator(method="statevector").run(circ, shots=20_000, seed_simulator=11)
    assert got == dict(want.result().get_counts())
