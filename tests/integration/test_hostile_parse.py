"""Hostile circuits against the REST API (issue 23, the parsing side) that need limits of
their own: the loop count at an exact instruction limit, and the parse sandbox (what
still goes wrong inside a parser stays in a child process with bounded memory and time).

Every other parsing case (H1, H2, M1, M5, L6, L7) runs against the one measured server
process of test_hostile_suite.py.
"""

from __future__ import annotations

import psycopg
import pytest

from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.hostile_inputs import H2, H3
from tests.fixtures.hostile_inputs import sim as _sim


def _rows(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"limits": {"max_instructions": 100}}}])
async def test_loop_count_is_exact_at_the_limit(api) -> None:
    """[0:9] runs 10 times, [0:2:8] 5 times: 10 * 5 * 2 = 100 instructions pass, 101 don't."""
    body = "qubit q;\nfor int i in [0:9] { for int j in [0:2:8] { x q; h q; } }\n"
    code, ok = await api("POST", "tasks", body=_sim(H3 + body))
    assert code == 201, ok
    code, err = await api("POST", "tasks", body=_sim(H3 + body + "x q;\n"))
    assert code == 422 and err["limit"] == "instructions" and err["value"] == 101, err


# ---- the second line of defence: the parse sandbox ---------------------------------------
_BIG_QASM2 = H2 + "qreg q[30];\ncreg c[30];\n"
_BIG_QASM2 += "".join(f"cx q[{i % 29}],q[{i % 29 + 1}];\n" for i in range(60_000))


@pytest.mark.parametrize(
    "qtd_config",
    [{"QtaskdistApp": {"limits": {"parse_memory_bytes": 16 * 2**20, "parse_workers": 1}}}],
)
async def test_a_parse_that_runs_out_of_memory_is_refused_and_the_server_goes_on(
    api, database_url
) -> None:
    """A circuit within every counted limit whose parse needs more than the child may
    have: 422 naming the variable, and the next submit is served by a fresh child."""
    code, err = await api("POST", "tasks", body=_sim(_BIG_QASM2))
    assert code == 422 and err["limit"] == "parse", err
    assert "QTASKDIST_PARSE_MEMORY_BYTES" in err["detail"], err
    code, ok = await api("POST", "tasks", body=_sim(BELL_QASM2))
    assert code == 201, ok
    assert _rows(database_url) == 1


@pytest.mark.parametrize(
    "qtd_config", [{"QtaskdistApp": {"limits": {"parse_time_s": 1.0, "parse_workers": 1}}}]
)
async def test_a_parse_past_its_deadline_is_refused_and_the_server_goes_on(
    api, database_url
) -> None:
    code, ok = await api("POST", "tasks", body=_sim(BELL_QASM2))  # the child is warm now
    assert code == 201, ok
    code, err = await api("POST", "tasks", body=_sim(_BIG_QASM2))
    assert code == 422 and err["limit"] == "parse", err
    assert "QTASKDIST_PARSE_TIME_S" in err["detail"], err
    code, ok = await api("POST", "tasks", body=_sim(BELL_QASM2.replace("h q[0]", "x q[0]")))
    assert code == 201, ok
    assert _rows(database_url) == 2
