"""Fixtures come in as plugins (no star imports): ours in tests/fixtures/, and
jupyter_server's ``jp_fetch`` / ``jp_serverapp``.

The server-side plugins import jupyter_server, IPython and the server extension: seconds
of start-up that tests/unit, the loop while developing, never uses. They are loaded
unless every path this run was given lies in tests/unit.
"""

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.fake_qbraid"]
SERVER_PLUGINS = (
    "pytest_jupyter.jupyter_server",
    "tests.fixtures.server",
    "tests.fixtures.service_host",
    "tests.fixtures.notebook",
    "tests.fixtures.browser",
    "tests.fixtures.hub",
)
UNIT = Path(__file__).resolve().parent / "unit"


def pytest_configure(config: pytest.Config) -> None:
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]) for arg in config.args]
    if not paths or not all(p.resolve().is_relative_to(UNIT) for p in paths):
        for name in SERVER_PLUGINS:
            config.pluginmanager.import_plugin(name)
