"""An observable must have one Pauli factor per qubit: refused at submit, not on a worker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qtaskdist_jupyter.core.budget import check_submit
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import InvalidInput
from qtaskdist_jupyter.core.observables import observable_mismatch

INFO = SimpleNamespace(num_qubits=2, num_clbits=2, operations=["h", "cx", "measure"])


def test_the_first_pauli_string_of_another_length_is_named() -> None:
    assert observable_mismatch(["ZZ", {"XX": 0.5, "YY": 0.5}], 2) is None
    assert observable_mismatch(["ZZ", "ZZZ"], 2) == (1, "ZZZ")
    assert observable_mismatch([{"XX": 1.0, "Z": 2.0}], 2) == (0, "Z")
    assert observable_mismatch(None, 2) is None


def test_submit_refuses_an_observable_longer_than_the_circuit() -> None:
    check_submit("simulate", {"shots": 10, "observables": ["ZI"]}, INFO, Limits())
    with pytest.raises(InvalidInput) as err:
        check_submit("simulate", {"shots": 10, "observables": ["ZI", "ZZZ"]}, INFO, Limits())
    assert err.value.http_status == 422 and err.value.field == "payload.observables[1]"
    assert "'ZZZ' has 3 Pauli factors but the circuit has 2 qubits" in err.value.message
