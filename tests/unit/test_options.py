"""core/options.py: one settings model, from which the traitlets, the worker's flags, the
``Limits`` defaults and the docs table are derived."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from qtaskdist_worker.cli import build_parser, options_from
from qtaskdist_worker.worker import WorkerOptions

from qtaskdist_jupyter.core.config import Limits, load_options, load_settings
from qtaskdist_jupyter.core.errors import ConfigError
from qtaskdist_jupyter.core.options import DEFAULTS, FIELDS, env_var, help_of, on
from qtaskdist_jupyter.core.options_table import table

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "configuration.md"
# A valid value other than the default, per type, to see a variable reach its field.
SAMPLE: dict[Any, tuple[str, Any]] = {
    int: ("700000000", 700_000_000),
    float: ("7000.5", 7000.5),
    str: ("postgresql://h/db", "postgresql://h/db"),
    Path: ("/srv/qtd", Path("/srv/qtd")),
}


def _base_type(name: str) -> Any:
    annotation = FIELDS[name].annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return typing.Literal
    return args[0] if args else annotation


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FIELDS:
        monkeypatch.delenv(env_var(name), raising=False)
    for var in ("REDIS_HOST", "REDIS_PORT", "REDIS_DB"):
        monkeypatch.delenv(var, raising=False)


def test_every_field_has_exactly_one_variable_of_its_own() -> None:
    variables = [FIELDS[n].validation_alias for n in FIELDS]
    assert all(isinstance(v, str) for v in variables)  # no AliasChoices: one name each
    assert len(set(variables)) == len(variables)
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", str(v)) for v in variables)


@pytest.mark.parametrize("name", sorted(n for n in FIELDS if _base_type(n) is not typing.Literal))
def test_each_variable_sets_its_field_and_no_other(name: str) -> None:
    if _base_type(name) is bool:
        value = not FIELDS[name].default
        raw = str(value).lower()
    else:
        raw, value = SAMPLE[_base_type(name)]
    got = load_options({env_var(name): raw})
    assert getattr(got, name) == value
    others = {n for n in FIELDS if n != name and getattr(got, n) != getattr(DEFAULTS, n)}
    assert others == set()


def test_a_refused_value_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="QTASKDIST_WORKER_BATCH_SIZE=0 must be positive"):
        load_options({"QTASKDIST_WORKER_BATCH_SIZE": "0"})
    with pytest.raises(ConfigError, match="QTASKDIST_WORKER_STALE_S='soon' is not a number"):
        load_options({"QTASKDIST_WORKER_STALE_S": "soon"})
    # Empty means unset, as before.
    assert load_options({"QTASKDIST_MAX_SHOTS": ""}).max_shots == DEFAULTS.max_shots


def test_limits_are_the_fields_tagged_limit_with_their_defaults() -> None:
    fields = dataclasses.fields(Limits)
    assert [f.name for f in fields] == on("limit")
    for f in fields:
        assert f.default == FIELDS[f.name].default, f.name
        assert f.type == _base_type(f.name).__name__, f.name
    assert load_settings({"QTASKDIST_MAX_QUBITS": "12"}).limits.max_qubits == 12


def test_worker_flags_are_derived_with_the_models_defaults_and_help(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    args = parser.parse_args([])
    for name in on("cli"):
        action = actions[name]
        assert f"--{name.replace('_', '-')}" in action.option_strings
        assert action.help == help_of(name).replace("%", "%%"), name
        assert getattr(args, name) == FIELDS[name].default, name
    # A flag beats the variable, which beats the default.
    monkeypatch.setenv("QTASKDIST_WORKER_BATCH_SIZE", "64")
    assert build_parser().parse_args([]).batch_size == 64
    assert build_parser().parse_args(["--batch-size", "16"]).batch_size == 16
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--batch-size", "0"])


def test_worker_options_take_every_flag_and_agree_on_defaults(clean_env: None) -> None:
    worker_fields = {f.name: f for f in dataclasses.fields(WorkerOptions)}
    # None on either side: derived at run time (--max-time-limit-s: the limit's cap;
    # --concurrency, --name: the machine's); every other default is the model's.
    for name in on("cli"):
        mine = worker_fields[name].default if name in worker_fields else None
        if mine is not None and FIELDS[name].default is not None:
            assert mine == FIELDS[name].default, name
    flags = ["--batch-size", "9", "--grace-s", "2", "--burst", "--name", "w1", "-c", "3"]
    opts = options_from(build_parser().parse_args(flags))
    assert (opts.batch_size, opts.grace_s, opts.burst, opts.name, opts.concurrency) == (
        9,
        2.0,
        True,
        "w1",
        3,
    )
    # --name unset (None): WorkerOptions' own default, host-pid.
    assert options_from(build_parser().parse_args([])).name == WorkerOptions().name


def test_the_docs_table_is_the_models() -> None:
    text = DOCS.read_text()
    start = text.index("<!-- options table -->\n") + len("<!-- options table -->\n")
    end = text.index("<!-- end options table -->")
    assert text[start:end] == table(), "regenerate: python -m qtaskdist_jupyter.core.options_table"
    for name in FIELDS:
        assert f"| `{name}` | `{env_var(name)}` |" in text


# Variables that are no option: what the server exports for the kernels it starts.
NOT_OPTIONS = {"QTASKDIST_SERVER_URL", "QTASKDIST_TOKEN"}
PRODUCT = ("qtaskdist_jupyter", "server_extension", "worker", "devtools")


def test_every_qtaskdist_variable_in_product_code_is_a_fields() -> None:
    variables = {env_var(n) for n in FIELDS}
    named = {
        (path.relative_to(ROOT).as_posix(), name)
        for top in PRODUCT
        for path in sorted((ROOT / top).rglob("*.py"))
        for name in re.findall(r"\b(QTASKDIST_[A-Z0-9_]*[A-Z0-9])\b", path.read_text())
    }
    stray = sorted((p, n) for p, n in named if n not in variables | NOT_OPTIONS)
    assert stray == []
