"""The shared service's pure decisions: the static tokens file, the bearer header, the
hub's answer → identity, and the settings of both sides."""

from __future__ import annotations

from pathlib import Path

import pytest
from qtaskdist_server.service_host.tokens import (
    Identity,
    hash_token,
    parse_tokens,
    token_from_header,
)

from qtaskdist_jupyter.core.config import (
    kernel_server_env,
    load_service_settings,
    user_side_service,
)
from qtaskdist_jupyter.core.errors import ConfigError

H1, H2 = hash_token("a" * 20), hash_token("b" * 20)


def test_the_tokens_file_maps_hashes_to_users() -> None:
    text = f"# comment\n\n{H1} alice\n{H2.upper()} ops admin  # trailing comment\n"
    assert parse_tokens(text, "f") == {H1: Identity("alice"), H2: Identity("ops", admin=True)}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("a" * 20 + " alice", "sha256"),  # a token itself, not its hash
        (f"{H1}", "expected"),
        (f"{H1} alice root", "expected"),
        (f"{H1} al/ice", "user name"),
        (f"{H1} alice\n{H1} bob", "twice"),
    ],
)
def test_a_bad_tokens_file_names_its_line(line: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as exc:
        parse_tokens("# head\n" + line, "tokens.txt")
    assert "tokens.txt, line " in str(exc.value)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("token abc", "abc"),
        ("Bearer abc", "abc"),
        ("TOKEN abc ", "abc"),
        ("basic abc", None),
        ("token", None),
        ("token a b", None),
        ("", None),
    ],
)
def test_the_token_comes_only_from_the_authorization_header(header: str, token: str | None) -> None:
    assert token_from_header(header) == token


def test_the_hubs_answer_becomes_an_identity() -> None:
    from qtaskdist_server.service_host.hub import hub_identity

    scope = "access:services!service=qtaskdist"
    user = {"kind": "user", "name": "alice", "admin": False, "groups": [], "scopes": [scope]}
    need = {scope}
    assert hub_identity(user, need, None) == Identity("alice")
    assert hub_identity({**user, "admin": True}, need, None) == Identity("alice", admin=True)
    in_group = {**user, "groups": ["ops"]}
    assert hub_identity(in_group, need, "ops") == Identity("alice", admin=True)
    assert hub_identity(in_group, need, "other") == Identity("alice")
    assert hub_identity(None, need, None) is None
    assert hub_identity({**user, "scopes": ["read:users:name!user=alice"]}, need, None) is None
    # a service's token: a service named like a user must not become that user
    assert hub_identity({**user, "kind": "service"}, need, None) is None
    assert hub_identity({**user, "name": ""}, need, None) is None


def test_service_settings_from_a_hub_managed_environment() -> None:
    env = {
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10101",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/qtaskdist/",
        "QTASKDIST_SERVICE_ADMIN_GROUP": "ops",
    }
    s = load_service_settings(env)
    assert (s.auth, s.bind, s.port, s.prefix) == ("hub", "127.0.0.1", 10101, "/services/qtaskdist/")
    assert s.admin_group == "ops" and s.auth_cache_s == 10


def test_service_settings_without_a_hub(tmp_path: Path) -> None:
    s = load_service_settings({"QTASKDIST_SERVICE_TOKENS_FILE": str(tmp_path / "t")})
    assert (s.auth, s.bind, s.port, s.prefix) == ("tokens", "127.0.0.1", 8890, "/")
    assert s.tokens_file == tmp_path / "t"
    assert load_service_settings({"JUPYTERHUB_SERVICE_PREFIX": "x/y"}).prefix == "/x/y/"
    with pytest.raises(ConfigError, match="QTASKDIST_SERVICE_AUTH"):
        load_service_settings({"QTASKDIST_SERVICE_AUTH": "ldap"})
    with pytest.raises(ConfigError, match="QTASKDIST_SERVICE_PORT"):
        load_service_settings({"QTASKDIST_SERVICE_PORT": "eighty"})


def test_a_kernel_finds_the_shared_service_with_its_own_hub_token() -> None:
    hub = {"QTASKDIST_SERVICE_URL": "http://h/services/qtaskdist/", "JUPYTERHUB_API_TOKEN": "u"}
    assert kernel_server_env(hub) == ("http://h/services/qtaskdist/", "u")
    own = {**hub, "QTASKDIST_SERVER_URL": "http://s/", "QTASKDIST_TOKEN": "t"}
    assert kernel_server_env(own) == ("http://s/", "t")  # an explicit server wins
    assert kernel_server_env({}) == (None, None)
    assert user_side_service(hub) == ("http://h/services/qtaskdist/", "u")
    assert user_side_service({}) == (None, None)
    with pytest.raises(ConfigError, match="QTASKDIST_SERVICE_URL"):
        user_side_service({"QTASKDIST_SERVICE_URL": "postgresql://x"})
