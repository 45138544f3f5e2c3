"""Shared fixtures: ONE real Temporal dev server for the whole session, a fresh task queue per test.

* ``temporal_env`` (session): a running ``temporal server start-dev`` (in-memory, free ports);
  ``.address``, ``.ui_port``, ``.namespace``, ``.server`` (the ``DevServer``) and
  ``await temporal_env.client()`` (pydantic data converter, cached per session).
* ``task_queue`` (function): a unique task queue name for the test.
* ``alloc_ports(n)``: n distinct currently free TCP ports on 127.0.0.1 (``workers.proc.free_ports``;
  test modules import ``workers.proc`` rather than this file, whose module name depends on
  whether ``tests/`` is a package).
"""

from __future__ import annotations

import atexit
import os
import re
import tempfile
import uuid
from pathlib import Path

import pytest
import pytest_asyncio

from workers.devserver import DevServer, temporal_version
from workers.proc import free_ports

# hermetic: the machine's own Temporal environment configuration (a developer's TEMPORAL_* shell
# variables or ~/.config/temporalio/temporal.toml with a Cloud profile) must not reach the tests'
# settings or the processes they start (config/temporal.py reads both, as the temporal CLI does)
for _k in [k for k in os.environ if k.startswith("TEMPORAL_")]:
    del os.environ[_k]
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="hedgeflow-test-xdg-")


def pytest_report_header(config: pytest.Config) -> str:
    return f"temporal: {temporal_version()}"


#: ``make test`` runs the suite on two processes (pytest-xdist ``-n 2``): the tests mostly wait on
#: real servers. These modules measure venue time against wall time or kill and restart real
#: processes on a schedule, so they run one after another, on one of the two processes (each
#: may still run beside a lighter test on the other).
SERIAL_MODULES = frozenset({
    "test_chaos.py", "test_replay_venue_time.py", "test_bench.py", "test_upgrade.py", "test_trade_crash.py",
    "test_cli_exit.py", "test_operations.py", "test_up.py",
})


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Every test is its own unit of work, except SERIAL_MODULES, which are one unit together.
    (xdist's own ``--dist loadgroup`` would do this with markers; with pytest 9 its group
    suffix never reaches the scheduler, so the groups are made here.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SerialApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "serial" if nodeid.split("::", 1)[0].rsplit("/", 1)[-1] in SERIAL_MODULES else nodeid

    return SerialApart(config, log)


class TemporalEnv:
    """The session's dev server, as tests see it."""

    def __init__(self, server: DevServer) -> None:
        self.server = server
        self.address = server.address
        self.ui_port = server.ui_port
        self.namespace = server.namespace
        self._client = None

    async def client(self):
        """A connected ``temporalio.client.Client`` with the pydantic data converter."""
        if self._client is None:
            from workers.client import connect

            self._client = await connect(self.address, self.namespace)
        return self._client


@pytest_asyncio.fixture(scope="session")
async def temporal_env(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("temporal") / "devserver.log"
    port, ui_port = free_ports(2)
    server = DevServer(port=port, ui_port=ui_port, log_file=log)  # no db file: in-memory
    # belt and braces: stopped even if the session dies without running fixture teardown
    atexit.register(server.stop, 2.0)
    await server.astart(timeout_s=60)
    try:
        yield TemporalEnv(server)
    finally:
        await server.astop(timeout_s=5)
        atexit.unregister(server.stop)


@pytest.fixture
def task_queue(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]
    return f"test-{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def alloc_ports():
    """``alloc_ports(n) -> list[int]``: n distinct free ports on 127.0.0.1."""
    return free_ports


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
