"""ConvertPayload and the QIR verification settings (pure validation, no services)."""

from __future__ import annotations

import pytest

from qtaskdist_jupyter.core.config import Limits, load_limits
from qtaskdist_jupyter.core.errors import ConfigError, InvalidInput
from qtaskdist_jupyter.core.schemas import validate_payload
from tests.fixtures.circuits import BELL_QASM3


def _convert(**kw) -> dict:
    return validate_payload("c_qir_convert", {"circuit": BELL_QASM3, **kw}, Limits())


def test_bindings_one_object_or_a_list() -> None:
    assert _convert(parameter_bindings={"theta": 0.5})["parameter_bindings"] == {"theta": 0.5}
    many = [{"theta": 0}, {"theta": 1.5}]
    assert _convert(parameter_bindings=many)["parameter_bindings"] == many
    assert _convert()["verify"] == "auto" and "parameter_bindings" not in _convert()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"parameter_bindings": []}, "between 1 and 1000 bindings"),
        ({"parameter_bindings": [{"x": 0}] * 1001}, "between 1 and 1000 bindings"),
        ({"parameter_bindings": {"1x": 0}}, "is not an identifier"),
        ({"parameter_bindings": {"x": "0.5"}}, "parameter_bindings"),
        ({"verify": "yes"}, "payload.verify"),
        ({"verify_shots": 99}, "payload.verify_shots"),
        ({"verify_shots": 1000}, None),
        ({"verify_seed": -1}, "payload.verify_seed"),
    ],
)
def test_bad_convert_fields_are_refused(fields: dict, words: str | None) -> None:
    if words is None:
        assert _convert(**fields)["verify_shots"] == 1000
        return
    with pytest.raises(InvalidInput) as info:
        _convert(**fields)
    assert words in str(info.value)


def test_verify_shots_respect_the_shot_limit() -> None:
    with pytest.raises(InvalidInput, match="over the limit of 500"):
        validate_payload(
            "c_qir_convert", {"circuit": BELL_QASM3, "verify_shots": 600}, Limits(max_shots=500)
        )


def test_verification_settings_from_the_environment() -> None:
    d = load_limits({})
    assert (d.qir_verify_max_qubits, d.qir_verify_shots, d.qir_verify_time_s) == (20, 1000, 30.0)
    env = {
        "QTASKDIST_QIR_VERIFY_MAX_QUBITS": "0",
        "QTASKDIST_QIR_VERIFY_SHOTS": "4000",
        "QTASKDIST_QIR_VERIFY_TIME_S": "2.5",
    }
    got = load_limits(env)
    assert (got.qir_verify_max_qubits, got.qir_verify_shots, got.qir_verify_time_s) == (
        0,
        4000,
        2.5,
    )
    with pytest.raises(ConfigError, match="QTASKDIST_QIR_VERIFY_SHOTS=50 must be at least 100"):
        load_limits({"QTASKDIST_QIR_VERIFY_SHOTS": "50"})
