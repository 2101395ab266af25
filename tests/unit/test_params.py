"""Query parameters of the REST API (qtaskdist_server/api/params.py): pure parsing, no server."""

from __future__ import annotations

import pytest
from qtaskdist_server.api import params as qp
from qtaskdist_server.api.listing import SUMMARY_FIELDS

from qtaskdist_jupyter.core.errors import InvalidInput


def test_list_fields_default_to_the_summary_plus_include() -> None:
    assert qp.parse(qp.ListParams, {}).view == list(SUMMARY_FIELDS)
    q = qp.parse(qp.ListParams, {"include": "result", "limit": "5"})
    assert q.view == [*SUMMARY_FIELDS, "result"]
    assert q.filters()["limit"] == 5 and "include" not in q.filters()


def test_fields_win_over_include_and_always_hold_the_id() -> None:
    q = qp.parse(qp.ListParams, {"fields": "status,name", "include": "nonsense"})
    assert q.view == ["task_id", "status", "name"]


def test_a_bad_parameter_is_reported_before_a_bad_field_name() -> None:
    with pytest.raises(InvalidInput) as bad:
        qp.parse(qp.ListParams, {"limit": "0", "fields": "nonsense"})
    assert bad.value.field == "limit"
    with pytest.raises(InvalidInput) as bad:
        qp.parse(qp.ListParams, {"fields": "nonsense"})
    assert bad.value.field == "fields"
    assert bad.value.message.startswith("fields='nonsense' is not a task field")


def test_result_encoding() -> None:
    assert qp.parse(qp.ResultParams, {}).encoding == "npy"
    assert qp.parse(qp.ResultParams, {"encoding": "zstd"}).encoding == "zstd"
    with pytest.raises(InvalidInput) as bad:
        qp.parse(qp.ResultParams, {"encoding": "gzip"})
    assert bad.value.field == "encoding"
    assert bad.value.message == "encoding='gzip' must be npy or zstd"
