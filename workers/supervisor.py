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

What is started (commands, environments, logs, port checks, the replay config) is planned in
workers/up_plan.py; every child is a :class:`workers.proc.Child`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.names import SCANNER_ID
from workers.devserver import DevServerError
from workers.proc import ChildExited, ChildNotReady, tail
from workers.up_plan import (
    BACKOFF_MAX_S,
    REPORT_GRACE_S,
    STABLE_AFTER_S,
    Ready,
    Supervised,
    UpError,
    check_ports,
    plan,
    split_address,
)

if TYPE_CHECKING:
    from temporalio.client import Client

    from config import Settings


# --------------------------------------------------------------------------- scanner hook
async def ensure_scanner(client: Client, settings: Settings) -> bool:
    """Make sure the ``scanner`` workflow runs (an already running one is kept); True once it does."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from workflows.scanner import ScannerWorkflow, scanner_args

    await client.start_workflow(
        ScannerWorkflow.run,
        args=scanner_args(settings),
        id=SCANNER_ID,
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


class SearchAttributesMissing(UpError):
    """The namespace lacks hedgeflow's search attributes and this client may not add them (Temporal
    Cloud: they are added with ``tcld`` or in the Cloud UI); the message is the instruction."""


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the missing ones of ``SEARCH_ATTRIBUTES`` (all Keyword) in the client's namespace
    through the operator API; the names added. Raises ``SearchAttributesMissing`` with the exact
    ``tcld`` command when the server refuses (an API key without namespace-admin rights, Cloud)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError

    from workers.devserver import SEARCH_ATTRIBUTES

    ns = client.namespace
    have = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=ns))
    missing = [k for k in SEARCH_ATTRIBUTES if k not in have.custom_attributes]
    if not missing:
        return []
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=ns, search_attributes=dict.fromkeys(missing, keyword)))
    except RPCError as exc:
        flags = " ".join(f"--search-attribute {k}={SEARCH_ATTRIBUTES[k]}" for k in missing)
        raise SearchAttributesMissing(
            f"namespace {ns} lacks the search attributes {', '.join(missing)} and refused to add them "
            f"({exc.status.name}: {exc.message}); trades cannot start without them. On Temporal Cloud add "
            f"them with `tcld namespace search-attributes add --namespace {ns} {flags}` (or in the Cloud UI: "
            f"Namespaces → {ns} → Custom Search Attributes), elsewhere with `temporal operator "
            f"search-attribute create --namespace {ns}` and --name/--type for each; then run this again") from None
    return missing


# --------------------------------------------------------------------------- readiness
def _ready(not_ready: Callable[[ChildNotReady, float], str], **how: Any) -> Ready:
    """A readiness check of ``Child.await_ready(**how)`` whose failures are UpErrors with the log
    tail; ``not_ready(exc, timeout_s)`` says what did not happen in time."""
    async def ready(rec: Supervised, timeout_s: float) -> None:
        try:
            await rec.child.await_ready(timeout=timeout_s, **how)
        except ChildExited as exc:
            raise UpError(f"{rec.what} exited with code {exc.code} during start-up; "
                          f"log {rec.log}:\n{tail(rec.log, 20)}") from None
        except ChildNotReady as exc:
            raise UpError(f"{rec.what} {not_ready(exc, timeout_s)}; "
                          f"log {rec.log}:\n{tail(rec.log, 20)}") from None
    return ready


def _sim_ready(url: str) -> Ready:
    return _ready(lambda exc, t: f"did not answer {url} within {t:.0f} s ({exc.last_error})",
                  url=url, interval=0.2, request_timeout=2)


def _worker_ready(needle: str) -> Ready:
    return _ready(lambda exc, t: f"did not report ready within {t:.0f} s", log_line=needle, interval=0.1)


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
        external: bool = False,
    ) -> None:
        self.settings = settings
        self.external = external  # ``up --temporal external``: no dev server, the configured cluster
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
    def _plan(self) -> tuple[Supervised | None, list[Supervised], Supervised]:
        return plan(self.settings, host=self.host, port=self.port, state_dir=self.state_dir,
                    config_path=self.config_path, replay_data=self.replay_data, replay_speed=self.replay_speed,
                    sim_ready=_sim_ready, worker_ready=_worker_ready, external=self.external)

    @property
    def children(self) -> list[Supervised]:
        dev = [self.devserver_child] if self.devserver_child is not None else []
        return [*dev, *self.sims, self.worker_child]

    def check_ports(self) -> None:
        check_ports(self.settings, self.host, self.port, external=self.external)

    # ------------------------------------------------------------------ start
    async def _start_child(self, child: Supervised) -> None:
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
        if self.devserver_child is not None:
            await self._start_child(self.devserver_child)
        else:
            await self._external()
        await asyncio.gather(*(self._start_child(c) for c in self.sims))
        self._plan_replay_report()
        await self._start_child(self.worker_child)
        if self.scanner:
            await self._scanner()
        else:
            self.say("scanner: skipped (--no-scanner)")
        await self._reconcile()
        self._print_urls()

    async def _external(self) -> None:
        """``--temporal external``: the configured cluster answers (else TemporalUnavailable/Refused,
        one line) and has the search attributes the dev server would have been started with."""
        from workers.client import TemporalRefused, TemporalUnavailable, connect

        t = self.settings.temporal
        try:
            client = await connect(self.settings)
        except TemporalRefused:
            raise
        except TemporalUnavailable as exc:  # not "is `hedgeflow up` running?": this is up
            raise UpError(f"--temporal external: cannot reach Temporal at {t.address}"
                          + (f" ({exc.cause})" if exc.cause else "")
                          + f"; check {t.setting('address')} and that the cluster is up") from None
        self.say(f"Temporal cluster {t.address} (namespace {t.namespace}, {t.security()}) answers; "
                 "no dev server started (--temporal external)")
        added = await ensure_search_attributes(client)
        self.say("search attributes: " + (f"added {', '.join(added)}" if added else "present"))

    async def _scanner(self) -> None:
        from workers.client import connect

        client = await connect(self.settings)
        if await ensure_scanner(client, self.settings):
            self.say("scanner: workflow 'scanner' running")
        else:
            self.say("scanner: not available yet")

    async def _reconcile(self) -> None:
        from workers.client import connect

        client = await connect(self.settings)
        if await ensure_reconcile(client, self.settings):
            self.say(f"reconcile: workflow 'reconcile' running every {self.settings.reconcile.interval_s:g} s")

    def _print_urls(self) -> None:
        s = self.settings
        lines = [
            "hedgeflow is up",
            f"  Temporal frontend  {s.temporal.address} (namespace {s.temporal.namespace}, "
            f"task queue {s.temporal.task_queue}" + (f", {s.temporal.security()})" if self.external else ")"),
            "  Temporal Web UI    the cluster's own (Temporal Cloud: https://cloud.temporal.io)" if self.external
            else f"  Temporal Web UI    http://{self.host}:{s.temporal.ui_port}",
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
        from control.report import data_span_ms

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
        from control.report import report_text
        from workers.client import connect

        s = self.settings
        try:
            client = await connect(s)
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
                if child.proc is not None and not child.alive:
                    code = child.child.returncode
                    self.say(f"{child.what} (pid {child.pid}) exited unexpectedly with code {code}; "
                             f"log {child.log}")
                    if now - child.child.started_at >= STABLE_AFTER_S:
                        child.failures = 0
                    self._schedule_restart(child, now)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.25)
            except TimeoutError:
                pass

    def _schedule_restart(self, child: Supervised, now: float) -> None:
        delay = min(BACKOFF_MAX_S, 0.5 * (2 ** child.failures))
        child.failures += 1
        child.restart_at = now + delay
        self.say(f"restarting {child.what} in {delay:g} s (attempt {child.failures})")

    async def _restart(self, child: Supervised) -> None:
        if self.stopping:
            return
        if child.alive:  # e.g. it never became ready last time
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
            running = [c for c in group if c is not None and c.alive]
            if not running:
                continue
            codes = await asyncio.gather(*(asyncio.to_thread(c.stop) for c in running))
            for c, code in zip(running, codes, strict=True):
                self.say(f"stopped {c.what} (pid {c.pid}, exit code {code})")

    def kill_all(self) -> None:
        for c in self.children:
            if c.alive:
                c.child.kill()

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
