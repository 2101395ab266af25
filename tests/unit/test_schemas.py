"""Payload validation: strict integers, ranges, unknown task types, limits."""

from __future__ import annotations

import pytest

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import InvalidInput, PayloadTooLarge, UnknownTaskType
from qtaskdist_jupyter.core.schemas import SEED_MAX, validate_payload
from tests.fixtures.circuits import BELL_QASM2


def _sim(**kw):
    return validate_payload("simulate", {"circuit": BELL_QASM2, **kw}, Limits())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shots", True),  # Aer would run shots=True as one shot
        ("shots", 10.0),
        ("shots", "10"),
        ("shots", 0),
        ("shots", -5),
        ("seed", -1),  # Aer turns -1 into 2**64 - 1
        ("seed", SEED_MAX + 1),
        ("seed", False),
        ("method", "tensor_network"),
        ("observables", ["ZQ"]),
        ("noise", {"depolarizing_1q": 1.5}),
        ("surprise", 1),
    ],
)
def test_bad_simulate_fields_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        _sim(**{field: value})
    # Nested fields are named in full, e.g. payload.noise.depolarizing_1q.
    assert info.value.field.startswith(f"payload.{field}")
    assert info.value.http_status == 422


def test_good_payload_is_normalized() -> None:
    out = _sim(shots=100, seed=SEED_MAX, observables=["ZZ", {"XX": 0.5}])
    assert out["shots"] == 100 and out["seed"] == SEED_MAX and out["method"] == "automatic"


def test_shots_over_the_configured_limit() -> None:
    with pytest.raises(InvalidInput, match="over the limit of 10"):
        validate_payload("simulate", {"circuit": BELL_QASM2, "shots": 11}, Limits(max_shots=10))


def test_unknown_task_type_and_oversized_payload() -> None:
    with pytest.raises(UnknownTaskType, match="unknown task_type 'teleport'"):
        validate_payload("teleport", {"circuit": BELL_QASM2}, Limits())
    with pytest.raises(PayloadTooLarge) as info:
        validate_payload("simulate", {"circuit": "x" * 2000}, Limits(max_payload_bytes=1000))
    assert info.value.http_status == 413


def test_convert_and_backend_payloads() -> None:
    out = validate_payload(
        "c_qir_convert", {"circuit": BELL_QASM2, "profile": "adaptive"}, Limits()
    )
    assert out["profile"] == "adaptive" and out["module_name"] == "main"
    with pytest.raises(InvalidInput, match="payload.profile"):
        validate_payload("c_qir_convert", {"circuit": BELL_QASM2, "profile": "full"}, Limits())
    with pytest.raises(InvalidInput, match="payload.device_id"):
        validate_payload("backend_run", {"circuit": BELL_QASM2}, Limits())
