"""What the pool jobs make, kind by kind: a task's result and the keys it adds to its
meta_data (``simulate``: :mod:`.simulate`; ``c_qir_convert``: :mod:`.convert`), and the
unit's reply that carries them (the shapes of :mod:`.protocol`'s ``Success``, made
precise). Plain dicts at run time.
"""

from __future__ import annotations

from typing import Literal, Required, TypedDict

from qtaskdist_jupyter.core.jsontypes import JsonObject, JsonValue

from .protocol import Failure
from .qir_verify import Figures


# ---- simulate ---------------------------------------------------------------------------
class Part(TypedDict, total=False):
    """One circuit's result, or one parameter binding's (then with its ``parameters``):
    counts and each array inline, or their spilled description (core/counts.py,
    core/arrays.py)."""

    parameters: dict[str, int | float]
    counts: dict[str, int] | JsonObject
    memory: list[str] | JsonObject
    statevector: list[list[float]] | JsonObject
    probabilities: dict[str, float] | JsonObject
    expectation_values: list[float]


class Sweep(TypedDict):
    """The result of a task with parameter bindings: one part per binding, in order."""

    results: list[Part]


class SimulateMeta(TypedDict, total=False):
    """What a simulate task adds to its meta_data."""

    simulator_time_s: float
    seed_simulator: int | list[int]
    # The method Aer ran (its metadata's ``method``; "automatic" picks one).
    method: JsonValue
    aer_threads: int
    mps_max_bond_dimension: int


class Simulated(TypedDict):
    """A simulate task that ran (the ``Success`` of jobs.protocol, with its shapes)."""

    ok: Literal[True]
    result: Part | Sweep
    meta: SimulateMeta


class SimulateReplies(TypedDict):
    """A unit's reply (jobs.protocol.UnitReply): each task's outcome by task id."""

    replies: dict[str, Simulated | Failure]


# ---- c_qir_convert ----------------------------------------------------------------------
class Verification(Figures, total=False):
    """A module's execution check: ``status`` "matched" (with the comparison's figures,
    the seed and the time it took), "skipped" (with the ``reason``) or, in a failed
    task's meta_data, "mismatch"."""

    status: Required[str]
    reason: str
    method: str
    seed: int
    time_s: float


class Summary(TypedDict):
    """The checks of a task's modules (one per parameter binding), summed up."""

    modules: int
    matched: int
    skipped: int
    max_tvd: float | None


class Module(TypedDict, total=False):
    """One converted module (``parameters``: the binding it was made with, if any)."""

    llvm_ir: Required[str]
    bitcode_base64: Required[str]
    required_num_qubits: Required[int]
    required_num_results: Required[int | None]
    profile: Required[str]
    entry_point: Required[str]
    module_name: Required[str]
    verification: Required[Verification]
    parameters: dict[str, int | float]


class Modules(TypedDict):
    """The result of a task with a list of bindings: one module each, in order."""

    modules: list[Module]
    profile: str


class ConvertMeta(TypedDict, total=False):
    """What a conversion adds to its task's meta_data."""

    qir_verification: Required[Verification | Summary]
    simulator_time_s: float


class Converted(TypedDict):
    """A conversion that succeeded (the ``Success`` of jobs.protocol, with its shapes)."""

    ok: Literal[True]
    result: Module | Modules
    meta: ConvertMeta


class ConvertReplies(TypedDict):
    """A unit's reply (jobs.protocol.UnitReply): each task's outcome by task id."""

    replies: dict[str, Converted | Failure]
