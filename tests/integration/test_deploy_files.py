"""The deployment files: docker-compose.yml, the Dockerfiles, .env.example, the wheel.

No Docker engine runs here, so this checks what can be checked without one: the compose
file is well-formed and every path, image and command it (and each Dockerfile) names
exists; the images' install sets resolve (the worker's without Jupyter); the wheel the
images install holds the three import packages and the server-extension config; the
worker healthcheck script answers healthy / unhealthy against a real Redis.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
JUPYTER_DISTS = re.compile(
    r"^(jupyter[a-z0-9-]*|ipykernel|ipython|ipywidgets|anywidget|notebook|nbformat|nbclient)$"
)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def dockerfiles() -> dict[str, Path]:
    out = {}
    for name, svc in compose()["services"].items():
        if "build" in svc:
            b = svc["build"]
            out[name] = ROOT / b.get("context", ".") / b["dockerfile"]
    return out


# ---- compose ----------------------------------------------------------------------
def test_compose_services_images_and_healthchecks() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "postgres", "jupyter", "worker", "prometheus"}
    assert services["prometheus"]["profiles"] == ["metrics"]  # opt-in
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["postgres"]["image"] == "postgres:15-alpine"
    for name, svc in services.items():
        assert "test" in svc.get("healthcheck", {}), f"{name} has no healthcheck"
    # PostgreSQL keeps its data in a named volume that the file declares.
    pg_volumes = [v.split(":")[0] for v in services["postgres"]["volumes"]]
    assert set(pg_volumes) <= set(compose()["volumes"])
    assert any(p.split(":")[-1] == "8888" for p in services["jupyter"]["ports"])
    # --scale worker=N needs no fixed name and no published port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    for name in ("jupyter", "worker"):
        env = services[name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "QBRAID_API_KEY"} <= set(env)
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert services["jupyter"]["environment"]["QTASKDIST_LOCAL_WORKERS"] == "0"


def test_compose_paths_exist() -> None:
    for name, svc in compose()["services"].items():
        if "build" in svc:
            assert (ROOT / svc["build"]["context"]).is_dir(), name
            assert dockerfiles()[name].is_file(), name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name}: volume source {src} missing"


def test_env_example_names_the_variables() -> None:
    names = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert {"DATABASE_URL", "REDIS_URL", "QBRAID_API_KEY"} <= names
    # Every ${VAR} the compose file interpolates is documented there.
    used = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    assert used <= names, used - names


def test_prometheus_scrapes_the_server_route_and_every_worker() -> None:
    from qtaskdist_server.metrics import metrics_handlers

    services = compose()["services"]
    prom = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert config_path == "./docker/prometheus.yml"
    assert f"--config.file={'/etc/prometheus/prometheus.yml'}" in prom["entrypoint"][-1]
    jobs = {j["job_name"]: j for j in yaml.safe_load((ROOT / config_path).read_text())[
        "scrape_configs"
    ]}  # fmt: skip

    server = jobs["qtaskdist-server"]
    ((route, _handler),) = metrics_handlers
    assert re.fullmatch(route, server["metrics_path"]), (route, server["metrics_path"])
    (target,) = server["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "jupyter" and any(p.split(":")[-1] == port for p in services[host]["ports"])
    # The token file the scrape sends is the one the entrypoint writes from JUPYTER_TOKEN.
    token_file = server["authorization"]["credentials_file"]
    assert f"> {token_file}" in prom["entrypoint"][-1] and "JUPYTER_TOKEN" in prom["environment"]

    worker = jobs["qtaskdist-worker"]["dns_sd_configs"][0]
    assert worker["names"] == ["worker"] and worker["type"] == "A"
    args = _worker_parser().parse_args(services["worker"]["command"][1:])
    assert args.metrics_port == worker["port"]
    assert args.metrics_addr == "0.0.0.0"  # reachable from the prometheus container


# ---- Dockerfiles ------------------------------------------------------------------
def test_dockerfile_copy_sources_exist() -> None:
    for name, path in dockerfiles().items():
        copies = [exec_form(a) for op, a in dockerfile(path) if op == "COPY"]
        assert copies, name
        for parts in copies:
            for src in parts[:-1]:
                assert (ROOT / src).exists(), f"{path.name}: COPY source {src} missing"


def _worker_parser() -> Any:
    from qtaskdist_worker.cli import build_parser

    return build_parser()


def _check_command(cmd: list[str], where: str) -> None:
    """The executable is a real entry point, and our CLIs accept the arguments."""
    exe = cmd[0]
    if exe == "qtaskdist-worker":
        assert SCRIPTS[exe] == "qtaskdist_worker.cli:main"
        _worker_parser().parse_args(cmd[1:])  # SystemExit on an unknown flag
    elif exe in SCRIPTS:
        pass
    elif exe == "python":
        script = cmd[1]
        if script == "-c":
            compile(cmd[2], where, "exec")
        else:
            # A script the image copies in: it must be one of ours.
            assert script in {
                "/opt/qtaskdist/worker_healthcheck.py",
            }, f"{where}: unknown script {script}"
    elif exe == "jupyter":
        # `jupyter lab` comes from jupyterlab, which the jupyter image installs.
        assert cmd[1] == "lab"
        import jupyterlab  # noqa: F401 - the dev extra has it, as the image does
    else:
        pytest.fail(f"{where}: {exe} is neither a console script of pyproject nor known")


def test_commands_refer_to_real_entry_points() -> None:
    for name, path in dockerfiles().items():
        instrs = dockerfile(path)
        cmds = [exec_form(a) for op, a in instrs if op == "CMD"]
        assert cmds, f"{path.name} has no CMD"
        _check_command(cmds[-1], path.name)
        for op, args in instrs:
            if op == "HEALTHCHECK":
                _check_command(exec_form(args.split(" CMD ", 1)[1]), f"{path.name} HEALTHCHECK")
        svc = compose()["services"][name]
        if "command" in svc:
            _check_command(svc["command"], f"compose {name}")
        test = svc["healthcheck"]["test"]
        if test[0] == "CMD":
            _check_command(test[1:], f"compose {name} healthcheck")
    assert "worker_healthcheck.py" in (ROOT / "docker/worker.Dockerfile").read_text()


def test_worker_cli_refuses_unknown_flags() -> None:
    """The check above can fail: the worker has no --alive-file, for instance."""
    with pytest.raises(SystemExit):
        _worker_parser().parse_args(["--alive-file", "/tmp/x"])


def _uv() -> str:
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.fail("uv is not installed (scripts/bootstrap.sh installs it)")
    return uv


def _resolve(extra: str) -> set[str]:
    """The distributions `pip install .[extra]` would install, as uv resolves them."""
    r = subprocess.run(
        [_uv(), "pip", "compile", "pyproject.toml", "--extra", extra, "--python-version",
         "3.11", "--no-header", "--no-annotate", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return {line.split("==")[0].lower() for line in r.stdout.splitlines() if "==" in line}


def test_worker_image_install_set_has_no_jupyter() -> None:
    worker = _resolve("worker")
    assert {"qiskit-aer", "qbraid", "pyqir", "redis", "sqlalchemy"} <= worker
    assert not {d for d in worker if JUPYTER_DISTS.match(d)}, sorted(worker)
    server = _resolve("server")
    assert "jupyter-server" in server and "qiskit-aer" not in server


def test_wheel_holds_the_packages_and_the_extension_config(tmp_path: Path) -> None:
    r = subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(tmp_path), "--quiet", str(ROOT)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("qtaskdist_jupyter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in ("qtaskdist_jupyter", "qtaskdist_server", "qtaskdist_worker"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert "qtaskdist_jupyter/core/migrations/env.py" in names or any(
        n.startswith("qtaskdist_jupyter/core/migrations/") for n in names
    )
    assert any(
        n.endswith("data/data/etc/jupyter/jupyter_server_config.d/qtaskdist_server.json")
        for n in names
    ), [n for n in names if "etc/jupyter" in n]
    assert not any(n.startswith(("worker/", "server_extension/", "tests/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    for script, target in SCRIPTS.items():
        assert f"{script} = {target}" in text


# ---- the worker healthcheck, for real ---------------------------------------------
def _healthcheck(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "HOME": str(Path.home())}
    return subprocess.run(
        [sys.executable, str(ROOT / "docker/worker_healthcheck.py"), *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_worker_healthcheck_follows_heartbeats(redis_url: str) -> None:
    from qtaskdist_jupyter.core.broker.broker import Broker

    r = _healthcheck(redis_url)
    assert r.returncode == 1 and "no heartbeat" in r.stderr, r

    broker = Broker.from_url(redis_url)
    try:
        await broker.heartbeat("w1", {"host": socket.gethostname(), "pid": 1})
        r = _healthcheck(redis_url)
        assert r.returncode == 0, r.stderr
        # Another host's heartbeat does not make this container healthy.
        r = _healthcheck(redis_url, "--host", "some-other-container")
        assert r.returncode == 1
        # A beat older than --max-age-s (the check itself takes longer than 1 ms).
        r = _healthcheck(redis_url, "--max-age-s", "0.001")
        assert r.returncode == 1 and "s ago" in r.stderr, r.stderr
    finally:
        await broker.close()


def test_worker_healthcheck_reports_redis_down() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _healthcheck(f"redis://127.0.0.1:{port}/0")
    assert r.returncode == 1 and "Redis unreachable" in r.stderr, r.stderr
