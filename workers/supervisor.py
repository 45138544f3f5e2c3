"""``hedgeflow up``: the dev server, the simulated venues and one worker as supervised children.

Start order: Temporal dev server (db under the state dir) → one simulator per ``kind: sim``
venue → the worker → the scanner (``ensure_scanner``). Each child must prove it is ready
(client connect / ``GET /_sim/state`` / the worker's ready line) before the next step.

While running, a child that dies unexpectedly is logged and restarted with exponential backoff.
On stop (SIGINT/SIGTERM): worker first (gracefully), then the simulators, then the dev server,
all within ``STOP_BUDGET_S``. Children run in their own sessions so a terminal Ctrl-C reaches
only the supervisor, which then stops them in that order; on Linux they also get SIGTERM if
the supervisor itself dies. Output of every child goes to ``STATE_DIR/logs/NAME.log``.

Running ``up`` again on the same state dir resumes: the dev server reopens
``STATE_DIR/temporal.sqlite`` and every simulator its ``STATE_DIR/sim-NAME.sqlite``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from workers.devserver import (
    DevServer,
    DevServerError,
    PortInUseError,
    child_preexec,
    port_is_free,
    tail,
    terminate,
)
from workers.worker import ready_line

if TYPE_CHECKING:
    from temporalio.client import Client

    from config import Settings, VenueConfig

STOP_BUDGET_S = 10.0
WORKER_STOP_S = 5.0  # of which the worker gives in-flight activities WORKER_GRACE_S
WORKER_GRACE_S = 3.5
SIM_STOP_S = 2.0
DEVSERVER_STOP_S = 2.5
READY_TIMEOUT_S = 60.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long restarts with the shortest backoff again
REPLAY_BASE_PORT = 8701
REPORT_GRACE_S = 5.0  # after the replayed data ends, before its report is printed


class UpError(RuntimeError):
    """A user-facing failure of ``up``; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- scanner hook
async def ensure_scanner(client: Client, settings: Settings) -> bool:
    """Make sure the ``scanner`` workflow runs; return True if it does.

    No-op returning False until ``workflows.scanner`` exists. Once it does, this starts
    ``workflows.scanner.ScannerWorkflow`` with id ``scanner`` (an already running one is kept),
    passing ``workflows.scanner.scanner_args(settings)`` if that function exists, else nothing.
    """
    try:
        import workflows.scanner as scanner_mod
    except ModuleNotFoundError as exc:
        if exc.name in ("workflows.scanner",):
            return False
        raise
    wf = getattr(scanner_mod, "ScannerWorkflow", None)
    if wf is None:
        return False
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    make_args = getattr(scanner_mod, "scanner_args", None)
    args = list(make_args(settings)) if make_args else []
    await client.start_workflow(
        wf.run,
        args=args,
        id="scanner",
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    return True


async def ensure_reconcile(client: Client, settings: Settings) -> bool:
    """Make sure the ``reconcile`` workflow (``ReconcileWorkflow``) runs unless
    ``reconcile.enabled`` is false; an already running one is kept."""
    if not settings.reconcile.enabled:
        return False
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from workflows.reconcile import WORKFLOW_ID, ReconcileWorkflow, reconcile_params

    await client.start_workflow(
        ReconcileWorkflow.run,
        reconcile_params(settings),
        id=WORKFLOW_ID,
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    return True


# --------------------------------------------------------------------------- planning
def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UpError(f"temporal.address must be HOST:PORT (got {address!r})", 2)
    return host, int(port)


def replay_venue_names(path: str | Path) -> list[str]:
    """Venue names of a replay CSV in order of first appearance."""
    p = Path(path)
    try:
        with open(p, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "venue" not in reader.fieldnames:
                raise UpError(f"--data {p}: not a replay file (header must include 'venue')", 2)
            names: list[str] = []
            for row in reader:
                v = (row.get("venue") or "").strip()
                if v and v not in names:
                    names.append(v)
    except FileNotFoundError:
        raise UpError(f"--data: file {p} not found", 2) from None
    if not names:
        raise UpError(f"--data {p}: no rows", 2)
    return names


def write_replay_config(
    user_config: str | None, data: str | Path, state_dir: Path, existing: list[VenueConfig]
) -> Path:
    """STATE_DIR/replay-config.yaml: the user's file (if any) with ``profile: replay`` and one
    sim venue per venue in the data file; the worker gets the same file."""
    raw: dict[str, Any] = {}
    if user_config:
        try:
            raw = yaml.safe_load(Path(user_config).read_text()) or {}
        except (OSError, yaml.YAMLError):
            raw = {}  # load_settings already reported a broken file
    by_name = {v.name: v for v in existing}
    venues = []
    for i, name in enumerate(replay_venue_names(data)):
        known = by_name.get(name)
        port = known.port if known is not None and known.port else REPLAY_BASE_PORT + i
        venues.append({"name": name, "kind": "sim", "port": port})
    raw["profile"] = "replay"
    raw["venues"] = venues
    state_dir.mkdir(parents=True, exist_ok=True)
    out = state_dir / "replay-config.yaml"
    out.write_text(
        "# generated by `hedgeflow up --profile replay`; rewritten on every start\n"
        + yaml.safe_dump(raw, sort_keys=False)
    )
    return out


# --------------------------------------------------------------------------- children
@dataclass
class Child:
    """One supervised process. ``spawn`` must be cheap; ``ready`` proves it serves."""

    name: str
    what: str
    log: Path
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    ready_check: Callable[[Child], Any] | None = None  # async (child) -> None, raises
    stop_timeout: float = 5.0
    devserver: DevServer | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    log_offset: int = 0
    failures: int = 0
    restart_at: float | None = None
    restarting: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        if self.devserver is not None:
            self.proc = self.devserver.spawn()
        else:
            with open(self.log, "ab") as out:
                out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(self.cmd)}\n".encode())
                out.flush()
                self.proc = subprocess.Popen(
                    self.cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                    preexec_fn=child_preexec(),
                )
        self.started_at = time.monotonic()

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        if self.devserver is not None:
            await self.devserver.wait_ready(timeout_s)
            return
        assert self.ready_check is not None
        await self.ready_check(self, timeout_s)

    def new_output(self) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        return terminate(self.proc, self.stop_timeout)


async def _sim_ready(child: Child, timeout_s: float, url: str) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not child.alive():
            raise UpError(
                f"{child.what} exited with code {child.proc.returncode if child.proc else '?'} "
                f"during start-up; log {child.log}:\n{tail(child.log, 20)}"
            )
        try:
            await asyncio.to_thread(_http_get_json, url)
            return
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise UpError(f"{child.what} did not answer {url} within {timeout_s:.0f} s ({last}); "
                  f"log {child.log}:\n{tail(child.log, 20)}")


async def _worker_ready(child: Child, timeout_s: float, needle: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in child.new_output():
            return
        if not child.alive():
            raise UpError(
                f"{child.what} exited with code {child.proc.returncode if child.proc else '?'} "
                f"during start-up; log {child.log}:\n{tail(child.log, 20)}"
            )
        await asyncio.sleep(0.1)
    raise UpError(f"{child.what} did not report ready within {timeout_s:.0f} s; "
                  f"log {child.log}:\n{tail(child.log, 20)}")


def _http_get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - local admin URL
        return json.loads(resp.read() or b"null")


# --------------------------------------------------------------------------- supervisor
class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: str | None,
        state_dir: Path,
        scanner: bool = True,
        replay_speed: float | None = None,
        replay_data: str | None = None,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.state_dir = state_dir
        self.logs = state_dir / "logs"
        self.scanner = scanner
        self.replay_speed = replay_speed
        self.replay_data = replay_data
        self._out = out or (lambda line: print(line, flush=True))
        self.stopping = False
        self.replay_end_at: float | None = None  # wall time.time() when the replayed data ends
        self._report_task: asyncio.Task | None = None
        self.host, self.port = split_address(settings.temporal.address)
        self.devserver_child, self.sims, self.worker_child = self._plan()

    # ------------------------------------------------------------------ output
    def say(self, msg: str) -> None:
        self._out(f"[{time.strftime('%H:%M:%S')}] up: {msg}")

    # ------------------------------------------------------------------ plan
    def _plan(self) -> tuple[Child, list[Child], Child]:
        s = self.settings
        ds = DevServer(
            port=self.port,
            ui_port=s.temporal.ui_port,
            ip=self.host,
            db_file=self.state_dir / "temporal.sqlite",
            log_file=self.logs / "temporal.log",
            namespace=s.temporal.namespace,
        )
        dev = Child(
            name="temporal", what="Temporal dev server", log=ds.log_file, devserver=ds,
            stop_timeout=DEVSERVER_STOP_S,
        )
        sims = []
        for v in s.venues:
            if v.kind != "sim" or v.port is None:
                continue
            cmd = [sys.executable, "-m", "venues.sim", "--name", v.name, "--port", str(v.port),
                   "--state", str(self.state_dir / f"sim-{v.name}.sqlite")]
            if v.seed is not None:
                cmd += ["--seed", str(v.seed)]
            if v.funding_interval_s is not None:
                cmd += ["--funding-interval", str(v.funding_interval_s)]
            if self.replay_data:
                cmd += ["--replay", str(Path(self.replay_data).resolve())]
                if self.replay_speed is not None:
                    cmd += ["--speed", f"{self.replay_speed:g}"]
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            if v.api_key is not None:
                env["HEDGEFLOW_SIM_API_KEY"] = v.api_key.get_secret_value()
            if v.api_secret is not None:
                env["HEDGEFLOW_SIM_API_SECRET"] = v.api_secret.get_secret_value()
            url = f"http://127.0.0.1:{v.port}/_sim/state"
            sims.append(Child(
                name=v.name, what=f"simulator {v.name}", log=self.logs / f"{v.name}.log", cmd=cmd,
                env=env, stop_timeout=SIM_STOP_S,
                ready_check=lambda c, t, url=url: _sim_ready(c, t, url),
            ))
        wenv = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            TEMPORAL_ADDRESS=s.temporal.address,
            TEMPORAL_NAMESPACE=s.temporal.namespace,
            HEDGEFLOW__PROFILE=s.profile,
            HEDGEFLOW__STATE_DIR=str(self.state_dir),
        )
        wcmd = [sys.executable, "-m", "hedgeflow"]
        if self.config_path:
            wcmd += ["--config", str(self.config_path)]
        wcmd += ["worker", "--graceful-timeout", f"{WORKER_GRACE_S:g}"]
        needle = ready_line(s.temporal.task_queue, "")  # the address part may be normalised
        worker = Child(
            name="worker", what="worker", log=self.logs / "worker.log", cmd=wcmd, env=wenv,
            stop_timeout=WORKER_STOP_S,
            ready_check=lambda c, t: _worker_ready(c, t, needle.rstrip()),
        )
        return dev, sims, worker

    @property
    def children(self) -> list[Child]:
        return [self.devserver_child, *self.sims, self.worker_child]

    def check_ports(self) -> None:
        s = self.settings
        checks = [
            (self.port, "Temporal frontend", "temporal.address (HEDGEFLOW__TEMPORAL__ADDRESS)"),
            (s.temporal.ui_port, "Temporal Web UI", "temporal.ui_port (HEDGEFLOW__TEMPORAL__UI_PORT)"),
        ]
        if s.metrics_port:
            checks.append((s.metrics_port, "worker metrics", "metrics_port (HEDGEFLOW__METRICS_PORT, 0 disables)"))
        for v in s.venues:
            if v.kind == "sim" and v.port is not None:
                checks.append((v.port, f"simulator {v.name}", f"venues[{v.name}].port in the config file"))
        seen: dict[int, str] = {}
        for port, what, setting in checks:
            if port in seen:
                raise UpError(f"port {port} is configured for both {seen[port]} and {what}; change {setting}", 2)
            seen[port] = what
        for port, what, setting in checks:
            host = self.host if what.startswith("Temporal") else "127.0.0.1"
            if not port_is_free(port, host):
                raise UpError(str(PortInUseError(port, what, setting)), 1)

    # ------------------------------------------------------------------ start
    async def _start_child(self, child: Child) -> None:
        try:
            child.spawn()
        except (OSError, DevServerError) as exc:
            raise UpError(f"cannot start {child.what}: {exc}") from None
        self.say(f"started {child.what} (pid {child.pid}, log {child.log})")
        try:
            await child.wait_ready()
        except DevServerError as exc:
            raise UpError(str(exc)) from None
        self.say(f"{child.what} ready (pid {child.pid})")

    async def start_all(self) -> None:
        self.check_ports()
        self.logs.mkdir(parents=True, exist_ok=True)
        await self._start_child(self.devserver_child)
        await asyncio.gather(*(self._start_child(c) for c in self.sims))
        self._plan_replay_report()
        await self._start_child(self.worker_child)
        if self.scanner:
            await self._scanner()
        else:
            self.say("scanner: skipped (--no-scanner)")
        await self._reconcile()
        self._print_urls()

    async def _scanner(self) -> None:
        from workers.client import connect

        client = await connect(self.settings.temporal.address, self.settings.temporal.namespace)
        if await ensure_scanner(client, self.settings):
            self.say("scanner: workflow 'scanner' running")
        else:
            self.say("scanner: not available yet")

    async def _reconcile(self) -> None:
        from workers.client import connect

        client = await connect(self.settings.temporal.address, self.settings.temporal.namespace)
        if await ensure_reconcile(client, self.settings):
            self.say(f"reconcile: workflow 'reconcile' running every {self.settings.reconcile.interval_s:g} s")

    def _print_urls(self) -> None:
        s = self.settings
        lines = [
            "hedgeflow is up",
            f"  Temporal frontend  {s.temporal.address} (namespace {s.temporal.namespace}, "
            f"task queue {s.temporal.task_queue})",
            f"  Temporal Web UI    http://{self.host}:{s.temporal.ui_port}",
            f"  worker metrics     http://127.0.0.1:{s.metrics_port}/metrics"
            if s.metrics_port else "  worker metrics     disabled (metrics_port 0)",
        ]
        for v in s.venues:
            lines.append(f"  venue {v.name:<12} {v.base_url}" + ("" if v.kind == "sim" else f" ({v.kind})"))
        lines.append(f"  state dir          {self.state_dir} (logs in {self.logs})")
        lines.append("press Ctrl-C to stop")
        for line in lines:
            self._out(line)

    # ------------------------------------------------------------------ replay report
    def _plan_replay_report(self) -> None:
        """The simulators replay from the moment they started: the data ends (its last row
        settles) ``(last − first) / speed`` later. A resumed replay keeps its old clock, so
        this estimate errs late, never early."""
        if not self.replay_data:
            return
        from hedgeflow.report import data_span_ms

        first, last = data_span_ms(self.replay_data)
        self.replay_end_at = time.time() + (last - first) / 1000 / (self.replay_speed or 1.0)
        when = time.strftime("%H:%M:%S", time.localtime(self.replay_end_at))
        self.say(f"replay: data ends at about {when}; the report follows then (`hedgeflow report` any time)")

    def _maybe_report(self) -> None:
        if self.replay_end_at is None or self._report_task is not None:
            return
        # leave the trades a few monitor intervals to book the last settlement
        grace = max(REPORT_GRACE_S, 2 * float(self.settings.trade.monitor_interval_s))
        if time.time() >= self.replay_end_at + grace:
            self._report_task = asyncio.create_task(self._report())

    async def _report(self) -> None:
        from hedgeflow.report import report_text
        from workers.client import connect

        s = self.settings
        try:
            client = await connect(s.temporal.address, s.temporal.namespace)
            text = await report_text(client, s.temporal.task_queue, self.replay_data, s.scanner.notional_usd,
                                     s.limits.max_open_trades)
        except Exception as exc:  # noqa: BLE001 - a report failure must not stop the supervisor
            self.say(f"replay over; report failed ({exc}); try `hedgeflow report`")
            return
        self.say("replay over: report (open trades keep running; `hedgeflow report` again any time)")
        for line in text.splitlines():
            self._out(line)

    # ------------------------------------------------------------------ supervise
    async def supervise(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._maybe_report()
            now = time.monotonic()
            for child in self.children:
                if child.restarting is not None:
                    if child.restarting.done():
                        exc = child.restarting.exception()
                        child.restarting = None
                        if exc is not None:
                            self.say(f"{child.what} failed to come back: {str(exc).splitlines()[0]}")
                            self._schedule_restart(child, now)
                        else:
                            self.say(f"{child.what} ready again (pid {child.pid})")
                    continue
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restart_at = None
                        child.restarting = asyncio.create_task(self._restart(child))
                    continue
                if child.proc is not None and not child.alive():
                    code = child.proc.returncode
                    self.say(f"{child.what} (pid {child.pid}) exited unexpectedly with code {code}; "
                             f"log {child.log}")
                    if now - child.started_at >= STABLE_AFTER_S:
                        child.failures = 0
                    self._schedule_restart(child, now)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.25)
            except TimeoutError:
                pass

    def _schedule_restart(self, child: Child, now: float) -> None:
        delay = min(BACKOFF_MAX_S, 0.5 * (2 ** child.failures))
        child.failures += 1
        child.restart_at = now + delay
        self.say(f"restarting {child.what} in {delay:g} s (attempt {child.failures})")

    async def _restart(self, child: Child) -> None:
        if self.stopping:
            return
        if child.alive():  # e.g. it never became ready last time
            await asyncio.to_thread(child.stop)
        child.spawn()
        self.say(f"restarted {child.what} (pid {child.pid})")
        await child.wait_ready()

    # ------------------------------------------------------------------ stop
    async def stop_all(self) -> None:
        """Worker first (gracefully), then the simulators, then the dev server."""
        self.stopping = True
        if self._report_task is not None and not self._report_task.done():
            self._report_task.cancel()
            await asyncio.gather(self._report_task, return_exceptions=True)
        for child in self.children:
            child.restart_at = None
            if child.restarting is not None and not child.restarting.done():
                child.restarting.cancel()
                await asyncio.gather(child.restarting, return_exceptions=True)
        for group in ([self.worker_child], self.sims, [self.devserver_child]):
            running = [c for c in group if c.alive()]
            if not running:
                continue
            codes = await asyncio.gather(*(asyncio.to_thread(c.stop) for c in running))
            for c, code in zip(running, codes, strict=True):
                self.say(f"stopped {c.what} (pid {c.pid}, exit code {code})")

    def kill_all(self) -> None:
        for c in self.children:
            if c.alive():
                try:
                    c.proc.kill()  # type: ignore[union-attr]
                except ProcessLookupError:
                    pass

    # ------------------------------------------------------------------ main
    async def run(self, stop: asyncio.Event) -> int:
        t0 = time.monotonic()
        starting = asyncio.create_task(self.start_all())
        stop_wait = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                self.say("stop requested during start-up")
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            else:
                starting.result()  # raise start-up errors
                self.say(f"all children ready in {time.monotonic() - t0:.1f} s")
                await self.supervise(stop)
            self.say("stopping (worker, then simulators, then Temporal)")
        finally:
            stop_wait.cancel()
            t1 = time.monotonic()
            await self.stop_all()
            self.say(f"stopped everything in {time.monotonic() - t1:.1f} s")
        return 0
