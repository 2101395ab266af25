"""The kernel's view of the API's answers (kernel/answers.py): each shape's check follows
its TypedDict, and Client refuses an answer that is not of its shape."""

from __future__ import annotations

import httpx
import pytest

from qtaskdist_jupyter.core.errors import ApiError
from qtaskdist_jupyter.kernel import answers
from qtaskdist_jupyter.kernel.client import Client

TID = "3f2b1c6e-0000-4000-8000-000000000001"
TASK = {
    "task_id": TID,
    "task_type": "simulate",
    "status": "completed",
    "attempt": 1,
    "batch_id": None,
    "result": {"counts": {"00": 3}},
    "tags": [],
    "created_at": "2026-12-07T10:00:00+00:00",
}
EVENT = {
    "task_id": TID,
    "status": "completed",
    "task_type": "simulate",
    "attempt": 1,
    "batch_id": None,
    "ts": 1.5,
    "started_at": 1,
    "id": "1-0",
}


def test_each_check_covers_its_typeddict() -> None:
    assert set(answers._TASK) == set(answers.TaskJson.__annotations__)
    assert set(answers._EVENT) == set(answers.EventJson.__annotations__)
    assert set(answers._HEALTH) == set(answers.HealthJson.__annotations__)


def test_answers_of_their_shape_pass() -> None:
    assert answers.is_task(TASK) and answers.is_task({"task_id": TID})
    assert answers.is_event(EVENT)
    assert answers.is_events_page({"events": [EVENT], "cursor": "1-0"})
    assert answers.is_tasks_page({"tasks": [TASK], "next_cursor": None})
    assert answers.is_counts({"counts": {"queued": 2, "running": 0}})
    assert answers.is_health({"database": {"ok": True}, "redis": {"ok": False, "error": "x"}})


@pytest.mark.parametrize(
    "value",
    [
        None,
        [TASK],
        {"status": "completed"},  # no task_id
        {**TASK, "attempt": "1"},
        {**TASK, "result": "done"},
    ],
)
def test_a_task_of_another_shape_fails(value: object) -> None:
    assert not answers.is_task(value)


def test_pages_check_their_items() -> None:
    assert not answers.is_events_page({"events": [{**EVENT, "ts": None}], "cursor": "1-0"})
    assert not answers.is_events_page({"events": [EVENT]})
    assert not answers.is_tasks_page({"tasks": [{"name": "x"}], "next_cursor": None})
    assert not answers.is_counts({"counts": {"queued": "2"}})


def _client(answer: object, status: int = 200) -> Client:
    client = Client("http://qtaskdist.test/", token="t")
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=answer))
    client._http = httpx.Client(base_url=client._http.base_url, transport=transport)
    return client


def test_client_returns_an_answer_of_its_shape() -> None:
    assert _client(TASK).get(TID) == TASK
    assert _client({"counts": {"queued": 2}}).counts() == {"queued": 2}


def test_client_refuses_an_answer_of_another_shape() -> None:
    with pytest.raises(ApiError, match="does not know") as caught:
        _client({"task_id": 7}, status=200).get(TID)
    assert caught.value.status == 200 and caught.value.error == "unexpected_answer"
    with pytest.raises(ApiError, match=r"GET events answered"):
        _client({"events": "none", "cursor": "0-0"}).events(timeout_s=0)
