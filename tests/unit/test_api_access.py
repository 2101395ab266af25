"""The API layer's pure decisions: the active-task quota and priority lane, large bodies in
flight, the rows that fit a page, who is an operator, and what a user sees of a row."""

from __future__ import annotations

import pytest
from qtaskdist_server.api import access, listing, quota

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import OwnerNamed, QuotaExceeded

LIMITS = Limits(max_active_tasks=100, priority_max_tasks=8, max_large_bodies=2)


def test_admit_counts_the_request_and_decides_the_lane() -> None:
    assert quota.admit(0, 8, LIMITS) is True
    assert quota.admit(7, 2, LIMITS) is False
    assert quota.admit(90, 10, LIMITS) is False
    with pytest.raises(QuotaExceeded) as exc:
        quota.admit(91, 10, LIMITS)
    assert exc.value.detail["limit"] == "active_tasks" and exc.value.detail["value"] == 101


def test_large_bodies_are_counted_per_owner() -> None:
    book = quota.LargeBodies()
    assert quota.is_large_body(LIMITS.large_body_bytes + 1, LIMITS)
    assert not quota.is_large_body(LIMITS.large_body_bytes, LIMITS)
    assert not quota.is_large_body(None, LIMITS)
    book.acquire("a", LIMITS)
    with book.hold("a", LIMITS):
        with pytest.raises(QuotaExceeded) as exc:
            book.acquire("a", LIMITS)
        assert exc.value.detail["limit"] == "large_bodies"
        book.acquire("b", LIMITS)
    assert book.open_of("a") == 1 and book.open_of("b") == 1
    book.release("a")
    assert book.open_of("a") == 0


@pytest.mark.parametrize(
    ("sizes", "cap", "fit"),
    [([], 10, 1), ([3, 3, 3], 10, 3), ([3, 3, 5], 10, 2), ([20, 1], 10, 1), ([10], 10, 1)],
)
def test_page_fit(sizes: list[int], cap: int, fit: int) -> None:
    assert listing.page_fit(sizes, cap) == fit


@pytest.mark.parametrize(
    ("admins", "granted", "single", "default", "expected"),
    [
        ((), True, True, True, True),  # a single-user server's user
        ((), True, False, True, False),  # many users, default authorizer: nobody
        (("alice",), True, False, True, True),  # ... until named
        (("alice",), False, False, False, True),
        ((), True, False, False, True),  # a custom authorizer's grant
        ((), False, True, False, False),
    ],
)
def test_is_operator(admins, granted, single, default, expected) -> None:
    got = access.is_operator(
        username="alice",
        admin_users=admins,
        granted=granted,
        single_user=single,
        default_authorizer=default,
    )
    assert got is expected


def test_redactor_hides_hosts_and_pids_and_keeps_the_rest() -> None:
    r = access.Redactor(key=b"k" * 32)
    error = "failed on gpu-7: pid 4242 died; see process 4242 (PID: 4243)"
    row = {
        "worker": "gpu-7-4242",
        "error": error,
        "status": "failed",
        "meta_data": {
            "host": "gpu-7",
            "worker": "gpu-7-4242",
            "run_time_s": 2.0,
            "attempts": [{"attempt": 1, "worker": "gpu-7-4242", "error": error}],
            "user": {"note": "mine"},
        },
    }
    out = r.row(row)
    text = repr(out)
    assert "gpu-7" not in text and "4242" not in text and "4243" not in text, text
    assert out["worker"] == out["meta_data"]["worker"] == out["meta_data"]["attempts"][0]["worker"]
    assert out["worker"] == r.pseudonym("gpu-7-4242") != r.pseudonym("gpu-8-1")
    assert out["meta_data"]["user"] == {"note": "mine"} and out["meta_data"]["run_time_s"] == 2.0
    assert row["meta_data"]["host"] == "gpu-7"  # the input is not changed
    assert r.row({"task_id": "t", "status": "queued"}) == {"task_id": "t", "status": "queued"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"task_type": "simulate", "owner": "alice"}, "owner"),
        ({"owner": ""}, "owner"),
        ({"tasks": [{"payload": {}}, {"owner": "alice"}]}, "tasks.1.owner"),
    ],
)
def test_a_request_naming_an_owner_is_refused(data: dict, field: str) -> None:
    with pytest.raises(OwnerNamed) as info:
        access.refuse_owner_fields(data)
    assert info.value.http_status == 403 and info.value.detail["field"] == field


def test_a_request_without_an_owner_passes() -> None:
    access.refuse_owner_fields({"task_type": "simulate", "payload": {"owner": "x"}})
    access.refuse_owner_fields({"tasks": [{"name": "owner"}], "labels": {"owner": 1}})
