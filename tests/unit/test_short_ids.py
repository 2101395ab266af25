"""An id given by its start (core/short_ids.py), the parameters of GET tasks/resolve and
its answer from the candidates found (qtaskdist_server/api/short_ids.py): pure, no server."""

from __future__ import annotations

import uuid

import pytest
from qtaskdist_server.api import params as qp
from qtaskdist_server.api.short_ids import MATCH_CAP, Kind, resolved

from qtaskdist_jupyter.core.errors import AmbiguousId, InvalidInput, TaskNotFound
from qtaskdist_jupyter.core.short_ids import id_range, id_start, parse_id_start

FULL = "1f0c2a9e-77b4-4c1d-9e2f-0123456789ab"


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("1f0c2a9e", "1f0c2a9e"),  # the 8 characters the table shows
        ("1F0C2A9E", "1f0c2a9e"),  # any case
        ("1f0c2a9e-", "1f0c2a9e"),
        ("1f0c2a9e-77", "1f0c2a9e77"),
        ("1f0c2a9e77b4", "1f0c2a9e77b4"),  # without its hyphens
        ("1f0c2a9e-77b4-4c1d", "1f0c2a9e77b44c1d"),
        (FULL, FULL.replace("-", "")),  # a whole id starts itself
    ],
)
def test_a_start_of_an_id(text: str, digits: str) -> None:
    assert id_start(text) == digits
    assert parse_id_start(text) == digits


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1f0c2a9",  # 7 digits: too short
        "1f0c-2a9e",  # hyphens where no id has them
        "1f0c2a9e--77",
        "-1f0c2a9e",
        "1f0c2a9g",  # not hex
        "sweep-01",
        "１f0c2a9e",  # a full-width digit
        "1f0c2a9e 77",
        " 1f0c2a9e",
        FULL + "0",  # longer than an id
        "{" + FULL + "}",
        "parked",
    ],
)
def test_anything_else_is_refused_naming_the_field(text: str) -> None:
    assert id_start(text) is None
    with pytest.raises(InvalidInput) as bad:
        parse_id_start(text)
    assert bad.value.field == "prefix" and "at least 8" in bad.value.message


def test_the_range_holds_exactly_the_ids_with_that_start() -> None:
    lo, hi = id_range("1f0c2a9e")
    assert lo == uuid.UUID("1f0c2a9e-0000-0000-0000-000000000000")
    assert hi == uuid.UUID("1f0c2a9e-ffff-ffff-ffff-ffffffffffff")
    assert lo <= uuid.UUID(FULL) <= hi
    assert not lo <= uuid.UUID("1f0c2a9f-0000-0000-0000-000000000000") <= hi
    whole = FULL.replace("-", "")
    assert id_range(whole) == (uuid.UUID(FULL), uuid.UUID(FULL))


def test_resolve_params() -> None:
    q = qp.parse(qp.ResolveParams, {"prefix": "1F0C2A9E-77"})
    assert (q.prefix, q.kind) == ("1f0c2a9e77", None)
    assert qp.parse(qp.ResolveParams, {"prefix": "1f0c2a9e", "kind": "batch"}).kind == "batch"
    assert qp.parse(qp.ResolveParams, {"prefix": "1f0c2a9e", "kind": ""}).kind is None
    for values, field in (
        ({}, "prefix"),
        ({"prefix": "1f0c"}, "prefix"),
        ({"prefix": "zzzzzzzz"}, "prefix"),
        ({"prefix": "1f0c2a9e", "kind": "worker"}, "kind"),
    ):
        with pytest.raises(InvalidInput) as bad:
            qp.parse(qp.ResolveParams, values)
        assert bad.value.field == field, values


def test_one_candidate_is_the_answer() -> None:
    tid = uuid.UUID(FULL)
    assert resolved("1f0c2a9e", None, [("task", tid)]) == {
        "prefix": "1f0c2a9e",
        "kind": "task",
        "id": FULL,
    }
    assert resolved("1f0c2a9e", "batch", [("batch", tid)])["kind"] == "batch"


def test_none_is_a_404_and_several_name_their_count() -> None:
    with pytest.raises(TaskNotFound) as none:
        resolved("1f0c2a9e", "batch", [])
    assert none.value.http_status == 404 and "none of your batches" in none.value.message
    two: list[tuple[Kind, uuid.UUID]] = [("task", uuid.uuid4()), ("batch", uuid.uuid4())]
    with pytest.raises(AmbiguousId) as amb:
        resolved("1f0c2a9e", None, two)
    assert amb.value.http_status == 422 and amb.value.to_json()["matches"] == 2
    assert "ids of 2 of your tasks and batches" in amb.value.message
    many: list[tuple[Kind, uuid.UUID]] = [("task", uuid.uuid4()) for _ in range(MATCH_CAP + 1)]
    with pytest.raises(AmbiguousId) as amb:
        resolved("1f0c2a9e", "task", many)
    assert f"more than {MATCH_CAP} of your tasks" in amb.value.message
