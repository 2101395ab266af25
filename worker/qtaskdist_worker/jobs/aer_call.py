"""One Aer call as ``AerSimulator.run(...).result()`` makes it, minus the per-call Python
work that does not change between calls of the same circuit.

``run`` hands each call to an ``AerJob`` thread, which runs ``_execute_circuits_job``:
compile the circuits (noise instructions), assemble them into Aer's C++ circuits, build
the config, execute, then wrap the output in a qiskit ``Result``. For a small circuit that
Python work costs more than the simulation. Seeded tasks cannot share one Aer call (Aer
gives experiment ``i`` of a call the seed ``seed_simulator + 2113 * i``), so a request of
many seeded tasks of one circuit pays it once per task. Here:

* the compiled and assembled circuits are kept per circuit object (the job process keeps
  each circuit text's parsed circuit, so a request's tasks of one text share it);
* the config is built as ``_execute_circuits_job`` builds it, from the call's own
  options, once per simulator, circuit shape (qubits, clbits) and set of options, so
  distinct circuits of one shape share it; each call sets its own seed on it (a call
  with parameter bindings builds its own);
* the C++ output is returned as the plain dict that ``Result.from_dict`` would have been
  given; :mod:`.simulate` reads counts, memory and saved data from it directly.

Aer's C++ controller overwrites everything a run sets on its input circuits (each
circuit's seed, shots, memory slots and derived metadata), simulates on copies and only
reads the config, so an assembled circuit and a config can serve again.
``tests/integration/test_aer_call.py`` checks this path against ``AerSimulator.run`` in-process, bit
for bit, over many seeds, circuits, noise, saves and bindings. Where this qiskit-aer
lacks the internals used here, the public path is taken.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from typing import Any, Required, TypedDict, cast

from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit_aer import AerError, AerSimulator
from qiskit_aer.noise import NoiseModel

from qtaskdist_jupyter.core.jsontypes import JsonObject

try:
    from qiskit_aer.backends.aer_compiler import (
        _validate_option,
        assemble_circuits,
        generate_aer_config,
    )

    _HAS_INTERNALS = True
except ImportError:  # pragma: no cover - depends on the installed qiskit-aer

    def _missing(*_args: Any, **_kwargs: Any) -> Any:
        raise AerError("this qiskit-aer lacks the internals aer_call uses")

    assemble_circuits = generate_aer_config = _validate_option = _missing
    _HAS_INTERNALS = False

log = logging.getLogger(__name__)

Binds = list[dict[Parameter, list[float]]] | None


class AerOptions(TypedDict, total=False):
    """The run options of one Aer call (``AerSimulator.run(..., **options)``)."""

    shots: int
    memory: bool
    max_parallel_threads: int
    max_parallel_experiments: int
    max_memory_mb: int
    matrix_product_state_max_bond_dimension: int
    seed_simulator: int
    noise_model: NoiseModel
    # Set by run_raw for a call with parameter bindings: Aer's own binding tables.
    parameterizations: object


class AerExperiment(TypedDict, total=False):
    """One experiment of an Aer call's output, as ``Result.from_dict`` would read it."""

    # Saved values by label: counts (hex keys), memory, and save_* values (numpy arrays,
    # floats): Aer's own types, read by the label each was saved under.
    data: dict[str, Any]
    # The circuit's header (creg_sizes, memory_slots, ...), as qiskit's formatting takes it.
    header: dict[str, Any]
    seed_simulator: Required[int]
    success: bool
    status: str
    time_taken: float
    metadata: JsonObject


class AerOutput(TypedDict, total=False):
    """An Aer call's output: one experiment per circuit (or per binding)."""

    results: Required[list[AerExperiment]]
    success: bool
    status: str


_INTERNALS = ("_compile", "_convert_binds", "_execute_circuits", "_execute_circuits_job")


class _Assembled:
    """A circuit as Aer's C++ side takes it, with what is needed to run it again."""

    def __init__(self, sim: AerSimulator, circuit: QuantumCircuit, options: AerOptions):
        # Held, so that no other object takes one of these ids while this is cached.
        self.sim, self.circuit, self.noise_in = sim, circuit, options.get("noise_model")
        compiled, self.noise_model = sim._compile([circuit], **options)
        self.compiled = compiled
        if sim._target is not None:
            basis = sim.configuration().basis_gates
            self.aer_circuits, self.idx_maps = assemble_circuits(compiled, basis)
        else:
            self.aer_circuits, self.idx_maps = assemble_circuits(compiled)
        for circ_id, aer_circuit in enumerate(self.aer_circuits):
            aer_circuit.circ_id = circ_id

    def serves(self, sim: AerSimulator, circuit: QuantumCircuit, noise: Any) -> bool:
        return self.sim is sim and self.circuit is circuit and self.noise_in is noise

    def config(self, sim: AerSimulator, options: AerOptions) -> Any:
        """``generate_aer_config(...)`` for these options: see :func:`_config`."""
        return _config(sim, self.compiled, options)


# generate_aer_config reads of the circuits only their largest qubit and clbit counts, so a
# config serves every circuit of those counts with the same simulator and options (but the
# seed, set on it for each call; Aer's C++ side only reads it): distinct circuits of one
# shape share it. Values: (config, simulator, noise model), held so their ids stay theirs.
_CONFIGS: OrderedDict[tuple[Any, ...], tuple[Any, AerSimulator, Any]] = OrderedDict()


def _config(sim: AerSimulator, compiled: list[QuantumCircuit], options: AerOptions) -> Any:
    shape = (max(c.num_qubits for c in compiled), max(c.num_clbits for c in compiled))
    key = (id(sim), *shape) + tuple(
        (k, id(v) if k == "noise_model" else v)
        for k, v in sorted(options.items())
        if k != "seed_simulator"
    )
    hit = _CONFIGS.get(key)
    if hit is not None and hit[1] is sim and hit[2] is options.get("noise_model"):
        _CONFIGS.move_to_end(key)
        hit[0].seed_simulator = _validate_option("seed_simulator", options.get("seed_simulator"))
        return hit[0]
    # BackendV2.options is unannotated: pyright infers None from the abstract _default_options.
    config = generate_aer_config(compiled, sim.options, **options)  # pyright: ignore[reportArgumentType]
    _CONFIGS[key] = (config, sim, options.get("noise_model"))
    if len(_CONFIGS) > _CONFIGS_MAX:
        _CONFIGS.popitem(last=False)
    return config


_CACHE: OrderedDict[tuple[int, int, int], _Assembled] = OrderedDict()
_CACHE_MAX = 64
_CONFIGS_MAX = 64


def _assembled(sim: AerSimulator, circuit: QuantumCircuit, options: AerOptions) -> _Assembled:
    # What _compile and assemble_circuits read: the circuit, the simulator (its target and
    # basis gates) and the noise model; all else in options goes to the config only.
    key_noise = options.get("noise_model")
    key = (id(sim), id(circuit), id(key_noise))
    hit = _CACHE.get(key)
    if hit is not None and hit.serves(sim, circuit, key_noise):
        _CACHE.move_to_end(key)
        return hit
    made = _Assembled(sim, circuit, options)
    _CACHE[key] = made
    if len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return made


def usable(sim: AerSimulator) -> bool:
    return _HAS_INTERNALS and all(hasattr(sim, n) for n in _INTERNALS)


def run_raw(
    sim: AerSimulator,
    circuits: list[QuantumCircuit],
    options: AerOptions,
    parameter_binds: Binds = None,
) -> AerOutput:
    """The output dict of ``sim.run(circuits, parameter_binds, **options)``: ``results[i]``
    holds ``data`` (counts as hex keys, memory, saved values), ``header``, ``seed_simulator``,
    ``time_taken``, ``success``, ``status`` and ``metadata``.

    A call of one circuit reuses that circuit's assembly from earlier calls; a call of
    many circuits (unseeded tasks sharing one call) assembles them as Aer does.
    """
    if not usable(sim):  # pragma: no cover - depends on the installed qiskit-aer
        return sim.run(circuits, parameter_binds, **options).result().to_dict()
    if len(circuits) != 1:
        # format_result=False: the raw output dict (its stub says Result, the formatted one).
        return sim._execute_circuits_job(  # pyright: ignore[reportReturnType]
            circuits, parameter_binds, dict(options), format_result=False
        )
    made = _assembled(sim, circuits[0], options)
    run_options: AerOptions = {**options}
    if run_options.get("seed_simulator") is None:
        # Aer seeds an unseeded run from the circuit's own seed, drawn when the circuit is
        # assembled and then kept in it: a kept assembly would repeat it. Draw one as Aer
        # does (a 32-bit value from the OS), so unseeded runs stay independent.
        run_options["seed_simulator"] = secrets.randbits(32)
    if parameter_binds:
        run_options["parameterizations"] = sim._convert_binds(
            made.compiled, parameter_binds, made.idx_maps
        )
        # BackendV2.options is unannotated: pyright infers None from the abstract _default_options.
        config = generate_aer_config(made.compiled, sim.options, **run_options)  # pyright: ignore[reportArgumentType]
    elif made.circuit.parameters:
        raise AerError("circuits have parameters but parameter_binds is not specified.")
    else:
        config = made.config(sim, run_options)
    output = sim._execute_circuits(made.aer_circuits, made.noise_model, config)
    if not isinstance(output, dict):
        raise AerError("simulation terminated without returning valid output.")
    for result in output.get("results", []):
        result.pop("circ_id", None)
    if not output.get("success", False):
        log.warning("Aer: simulation failed: %s", output.get("status"))
    # The C++ controller's output dict: the shape Result.from_dict reads (AerOutput).
    return cast(AerOutput, output)
