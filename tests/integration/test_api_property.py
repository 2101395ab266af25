"""Property test (hypothesis): generated JSON and parameters thrown at every endpoint.

Whatever arrives: never a 5xx, a 4xx is ``{"error", "detail"}`` and writes no row, and
the owner's list still answers afterwards (nothing half-valid was stored). Fixed seed
(``derandomize``) and a bounded number of examples, so it runs in the test command.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import BOB_TOKEN, TwoUserIdentity, simulate_spec

TWO_USERS = {"ServerApp": {"identity_provider_class": TwoUserIdentity}}
BOB = {"Authorization": f"token {BOB_TOKEN}"}

# Any text, lone surrogates and NUL included (JSON can spell them all).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
numbers = st.one_of(
    # The values PostgreSQL's jsonb refuses or that overflow a column, drawn often.
    st.sampled_from([math.nan, math.inf, -math.inf, 2**70, -(2**63) - 1, 1e308, 0]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=20,
)


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


# Shapes that pass the models' type checks (observables, bindings, options, labels), with
# any number in them: NaN, infinities and huge integers must still be refused up front.
number_maps = st.dictionaries(st.sampled_from(["ZZ", "XI", "t", "seed", "k"]), numbers, max_size=2)
# Values a field may be given: well-typed ones that may pass, and anything at all.
field_values = st.one_of(
    number_maps,
    st.lists(number_maps, min_size=1, max_size=2),
    json_values,
    st.integers(min_value=0, max_value=40).map(_deep),
    st.sampled_from(["simulate", "backend_run", "c_qir_convert", BELL_QASM2, "local", "$"]),
)
VALID_PAYLOADS = [
    {"circuit": BELL_QASM2, "shots": 16},
    {"circuit": BELL_QASM2, "observables": ["ZZ"]},
    {"circuit": BELL_QASM2, "device_id": "local"},
]
PAYLOAD_KEYS = ["shots", "seed", "observables", "parameter_bindings", "provider_options",
                "noise", "method", "circuit", "time_limit_s", "memory"]  # fmt: skip
TASK_KEYS = ["name", "tags", "labels", "meta_data", "max_retries", "enqueue", "batch_id",
             "task_type", "payload"]  # fmt: skip


def _with(base: dict[str, Any], kv: tuple[str, Any]) -> dict[str, Any]:
    return {**base, kv[0]: kv[1]}


# Per key, values of the right shape with any number inside (NaN, infinities, 2**70).
SHAPED = {
    "observables": st.lists(
        st.dictionaries(st.sampled_from(["ZZ", "XI"]), numbers, min_size=1, max_size=2),
        min_size=1,
        max_size=2,
    ),
    "provider_options": st.dictionaries(st.sampled_from(["seed", "x"]), numbers, max_size=2),
    "labels": st.dictionaries(st.sampled_from(["k", "user"]), numbers | any_text, max_size=2),
    "meta_data": st.dictionaries(st.sampled_from(["k", "attempts"]), numbers, max_size=2),
    "noise": st.dictionaries(st.sampled_from(["readout"]), numbers, max_size=1),
}
SHAPED.update(dict.fromkeys(["shots", "seed", "time_limit_s", "max_retries"], numbers))


def _key_values(keys: list[str]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.sampled_from(keys).flatmap(
        lambda k: st.tuples(st.just(k), SHAPED.get(k, field_values) | field_values)
    )


# Mostly a valid request with one field replaced (so generated values reach the deep
# checks and the database), sometimes anything at all.
mutated = st.builds(_with, st.sampled_from(VALID_PAYLOADS), _key_values(PAYLOAD_KEYS))
payloads = st.one_of(mutated, mutated, mutated, st.sampled_from(VALID_PAYLOADS), json_values)
valid_specs = st.builds(
    lambda payload, enqueue: {
        "task_type": "backend_run"
        if isinstance(payload, dict) and "device_id" in payload
        else "simulate",
        "payload": payload,
        "enqueue": enqueue,
    },
    payloads,
    st.booleans(),
)
task_specs = st.one_of(
    valid_specs,
    st.builds(_with, valid_specs, _key_values(TASK_KEYS)),
    st.fixed_dictionaries(
        {"task_type": st.sampled_from(["simulate", "backend_run", "nope"]), "payload": payloads},
        optional={k: field_values for k in TASK_KEYS if k not in ("task_type", "payload")},
    ),
)
patches = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["cancelled", "queued", "running", "x"]) | field_values,
        "name": field_values, "tags": field_values, "labels": field_values,
        "meta_data": field_values, "max_retries": field_values,
    },
)  # fmt: skip
params = st.dictionaries(
    st.sampled_from(["limit", "cursor", "after", "status", "task_type", "batch_id", "name",
                     "timeout_s"]),
    st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
        ["1", "1000", "²", "٣", "99999999999999999999999", "0-1", "nan"]),
    max_size=3,
)  # fmt: skip


def _body(draw_value: Any) -> bytes:
    # allow_nan: NaN / Infinity go out as JSON's non-standard tokens, as a client may send.
    return json.dumps(draw_value).encode()


# Each kind of request is its own run, with its own number of examples: the bodies that
# reach the database get the most.
KINDS: dict[str, tuple[int, st.SearchStrategy[Any]]] = {
    "create": (
        200,
        st.tuples(st.just("POST"), st.just("tasks"), (task_specs | json_values).map(_body), params),
    ),
    "batch": (
        50,
        st.tuples(
            st.just("POST"),
            st.just("tasks/batch"),
            st.fixed_dictionaries({"tasks": st.lists(task_specs, max_size=3)}).map(_body),
            params,
        ),
    ),
    "patch": (60, st.tuples(st.just("PATCH"), st.just("tasks/{id}"), patches.map(_body), params)),
    "verbs": (
        40,
        st.tuples(
            st.sampled_from(["POST"]),
            st.sampled_from(["tasks/{id}/enqueue", "tasks/{id}/cancel", "tasks/{id}/retry"]),
            json_values.map(_body) | st.just(b""),
            params,
        ),
    ),
    "reads": (
        60,
        st.tuples(
            st.sampled_from(["GET", "DELETE", "GET", "GET", "GET", "GET"]),
            st.sampled_from(
                ["tasks/{id}", "tasks/{bad}", "tasks", "tasks/counts", "events", "health"]
            ),
            st.just(None),
            params,
        ),
    ),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_generated_requests_never_5xx_and_write_only_on_2xx(api, database_url, kind) -> None:
    examples, requests = KINDS[kind]
    loop = asyncio.get_running_loop()
    code, own = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, labels={"k": 1}))
    assert code == 201
    conn = psycopg.connect(libpq_url(database_url), autocommit=True)

    def rows() -> int:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]

    def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return asyncio.run_coroutine_threadsafe(api(method, path, **kw), loop).result(60)

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(req=requests, as_bob=st.booleans(), bad=any_text)
    def check(req: tuple[str, str, bytes | None, dict[str, str]], as_bob: bool, bad: str) -> None:
        method, path, body, query = req
        path = path.format(id=own["task_id"], bad=uuid.uuid4() if not bad else bad[:8] or "x")
        query = dict(query)
        if path.startswith("events"):
            query["timeout_s"] = "0"  # never wait
        before = rows()
        code, answer = call(
            method, path, raw=body, params=query or None, headers=BOB if as_bob else None
        )
        assert code < 500, (method, path, body, query, code, answer)
        if not 200 <= code < 300:
            assert rows() == before, (method, path, body, code, answer)
            assert isinstance(answer, dict) and {"error", "detail"} <= set(answer), answer
        # Whatever was stored, the owners' lists and the task still read back.
        for who in (None, BOB):
            assert call("GET", "tasks", params={"limit": "1000"}, headers=who)[0] == 200
        assert call("GET", f"tasks/{own['task_id']}")[0] == 200

    try:
        await asyncio.to_thread(check)
    finally:
        conn.close()
