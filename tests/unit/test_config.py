"""config.py: the one module that reads the environment."""

from __future__ import annotations

import pytest

from qtaskdist_jupyter.core.config import load_settings, normalize_database_url
from qtaskdist_jupyter.core.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        # The seed's asyncpg URL is mapped onto psycopg 3.
        ("postgresql+asyncpg://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
    ],
)
def test_database_url_dialects_are_mapped(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected
    assert load_settings({"DATABASE_URL": url}).database_url == expected


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/db", "sqlite:///tasks.db", "postgresql+psycopg2://u@h/db"]
)
def test_wrong_dialect_is_refused_with_a_clear_message(url: str) -> None:
    with pytest.raises(ConfigError, match="needs PostgreSQL") as info:
        load_settings({"DATABASE_URL": url})
    assert url.split("://")[0] in str(info.value)


def test_not_a_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="is not a URL"):
        load_settings({"DATABASE_URL": "localhost:5432"})


def test_redis_from_seed_variables() -> None:
    s = load_settings({"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_DB": "2"})
    assert s.redis_url == "redis://cache:6380/2"
    # REDIS_URL wins when both are given.
    s = load_settings({"REDIS_URL": "redis://a:1/0", "REDIS_HOST": "cache"})
    assert s.redis_url == "redis://a:1/0"


def test_bad_redis_url_and_limits_are_refused() -> None:
    with pytest.raises(ConfigError, match="scheme 'http'"):
        load_settings({"REDIS_URL": "http://localhost:6379"})
    with pytest.raises(ConfigError, match="REDIS_PORT='x'"):
        load_settings({"REDIS_HOST": "h", "REDIS_PORT": "x"})
    with pytest.raises(ConfigError, match="QTASKDIST_MAX_QUBITS=0 must be at least 1"):
        load_settings({"QTASKDIST_MAX_QUBITS": "0"})


def test_embedded_when_a_url_is_missing_and_limits_from_env(tmp_path) -> None:
    s = load_settings({"QTASKDIST_HOME": str(tmp_path), "QTASKDIST_MAX_SHOTS": "50"})
    assert s.embedded and s.home == tmp_path and s.limits.max_shots == 50
    s = load_settings({"DATABASE_URL": "postgresql://h/db", "REDIS_URL": "redis://h"})
    assert not s.embedded


def test_body_and_page_limits_from_env() -> None:
    env = {
        "QTASKDIST_LARGE_BODY_BYTES": "4096",
        "QTASKDIST_MAX_LARGE_BODIES": "3",
        "QTASKDIST_MAX_PAGE_BYTES": "1000",
        "QTASKDIST_MPS_MAX_BOND_DIMENSION": "64",
        "QTASKDIST_EVENTS_CURSOR_SECRET": "k",
    }
    settings = load_settings(env)
    assert settings.limits.mps_max_bond_dimension == 64
    assert settings.events_cursor_secret == "k" and "'k'" not in repr(settings)
    limits = settings.limits
    assert (limits.large_body_bytes, limits.max_large_bodies, limits.max_page_bytes) == (
        4096,
        3,
        1000,
    )
    with pytest.raises(ConfigError, match="QTASKDIST_MAX_LARGE_BODIES=0 must be at least 1"):
        load_settings({"QTASKDIST_MAX_LARGE_BODIES": "0"})
