"""The jupyter-server host's own configuration and start-up, without services: its
traitlets derived from the settings model, and its migration retried only while the
database is down. Here rather than in tests/unit because importing the host (jupyter_server,
jupyter_events, jsonschema) costs seconds the fast unit loop cannot spare."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from qtaskdist_server.application import QtaskdistApp
from traitlets.config import Config

from qtaskdist_jupyter.core import migrate
from qtaskdist_jupyter.core.config import Settings
from qtaskdist_jupyter.core.errors import ConfigError, DatabaseUnavailable
from qtaskdist_jupyter.core.options import FIELDS, env_var, help_of, on


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FIELDS:
        monkeypatch.delenv(env_var(name), raising=False)
    for var in ("REDIS_HOST", "REDIS_PORT", "REDIS_DB"):
        monkeypatch.delenv(var, raising=False)


def test_traitlets_are_derived_with_the_models_defaults_and_help(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    traits = QtaskdistApp.class_traits(config=True)
    app = QtaskdistApp()
    for name in on("traitlet"):
        assert traits[name].help == help_of(name), name
        assert traits[name].help.startswith(FIELDS[name].description or "?"), name
        default = FIELDS[name].default
        assert getattr(app, name) == (str(default) if isinstance(default, Path) else default)
    # Unset in the config: the variable; set: the config wins.
    monkeypatch.setenv("QTASKDIST_WORKER_STALE_S", "3")
    assert QtaskdistApp().worker_stale_s == 3.0
    config = Config()
    config.QtaskdistApp.worker_stale_s = 2.5
    assert QtaskdistApp(config=config).worker_stale_s == 2.5


@pytest.mark.parametrize(
    ("outcomes", "migrated", "calls"),
    [
        ((DatabaseUnavailable("down"), DatabaseUnavailable("down"), None), True, 3),
        ((ConfigError("bad revision"), None), False, 1),
    ],
)
def test_the_servers_migration_retries_only_while_the_database_is_down(
    monkeypatch: pytest.MonkeyPatch, outcomes: tuple[Any, ...], migrated: bool, calls: int
) -> None:
    log: list[str] = []

    def upgrade(url: str) -> None:
        log.append(url)
        outcome = outcomes[len(log) - 1]
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(migrate, "upgrade", upgrade)
    app = QtaskdistApp()
    app.settings_obj = Settings(database_url="postgresql+psycopg://h/db", redis_url="redis://h")
    try:
        asyncio.run(app._migrate_until_done(every_s=0.0))
    except ConfigError:
        pass
    assert (app._migrated, len(log)) == (migrated, calls)
