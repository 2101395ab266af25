"""The Redis ACL users (core/broker/acl.py) and ``qtaskdist redis-acl``: pure checks; the
real server's verdicts are tests/integration/test_least_privilege.py's."""

from __future__ import annotations

import hashlib

import pytest

from qtaskdist_jupyter.core.broker import acl
from qtaskdist_jupyter.core.broker.keys import DEAD_STREAM, STREAMS, WORKERS_KEY
from qtaskdist_jupyter.core.embedded.cli import main
from qtaskdist_jupyter.core.errors import InvalidInput

PASSWORD = "a-long-enough-password-1"


@pytest.mark.parametrize("name", [acl.SERVICE_USER, acl.WORKER_USER])
def test_rules_reset_first_and_allow_nothing_broad(name: str) -> None:
    rules = acl.rules(acl.USERS[name], PASSWORD)
    assert rules[:2] == ["reset", "on"] and "resetchannels" in rules
    assert rules.index("-@all") < min(i for i, r in enumerate(rules) if r.startswith("+"))
    assert not {"~*", "allkeys", "+@all", "allcommands", "nopass", "+eval", "&*"} & set(rules)
    assert not [r for r in rules if "*" in r or r.startswith("+@")]
    for stream in STREAMS.values():
        assert f"~{stream}" in rules


def test_the_service_only_reads_worker_state_and_dead_letters() -> None:
    rules = acl.rules(acl.USERS[acl.SERVICE_USER], PASSWORD)
    assert f"%R~{WORKERS_KEY}" in rules and f"%R~{DEAD_STREAM}" in rules
    assert f"~{WORKERS_KEY}" not in rules and f"~{DEAD_STREAM}" not in rules
    assert not {"+xack", "+xdel", "+xgroup|create", "+hset", "+zadd", "+set"} & set(rules)


def test_password_is_stored_hashed_and_checked() -> None:
    line = acl.acl_file_line(acl.USERS[acl.WORKER_USER], PASSWORD)
    assert line.startswith("user qtaskdist-worker reset on #")
    assert PASSWORD not in line and f"#{hashlib.sha256(PASSWORD.encode()).hexdigest()}" in line
    for bad in ("", "short", "sixteen chars ok but spaced"):
        with pytest.raises(InvalidInput) as exc:
            acl.password_hash(bad)
        assert exc.value.field == "password"


def test_cli_prints_both_users_or_nothing(tmp_path, capsys) -> None:
    svc, wrk = tmp_path / "svc", tmp_path / "wrk"
    svc.write_text(PASSWORD + "\n")
    wrk.write_text("x" * 20 + "\n")
    args = ["redis-acl", "--service-password-file", str(svc), "--worker-password-file"]
    assert main([*args, str(wrk), "--format", "setuser"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in out] == [
        ["ACL", "SETUSER", "qtaskdist-service"],
        ["ACL", "SETUSER", "qtaskdist-worker"],
    ]
    wrk.write_text("short\n")
    assert main([*args, str(wrk)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "16 characters" in captured.err
    assert main([*args, str(tmp_path / "missing")]) == 2
    assert "cannot read password file" in capsys.readouterr().err
