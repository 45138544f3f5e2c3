"""The hedgeflow worker: every workflow and activity on task queue ``settings.temporal.task_queue``.

``run_worker`` is the whole lifecycle and can run in-process (tests) or as ``hedgeflow worker``:

1. connect with the ``temporal`` connection profile (``config/temporal.py``: the settings, then
   Temporal's ``TEMPORAL_*`` variables and profile file for what they leave out), with a
   Prometheus endpoint for the SDK metrics on ``127.0.0.1:{metrics_port}`` (0 disables);
2. build one ``GatewayPool(settings)`` and register what ``workers.registry``
   lists (its workflows, and its activities bound to the pool);
3. print ``worker ready on task queue QUEUE at ADDRESS`` once polling has started;
   with ``worker.build_id`` set it is version ``DEPLOYMENT.BUILD_ID`` of a Worker Deployment
   (``deployment_config``): it gets tasks once that version is current (``promote=True`` makes
   it current as soon as it polls); workflows are pinned to the version they started on until
   they continue as new;
4. on ``stop_event`` (SIGINT/SIGTERM in the CLI): stop polling, give in-flight activities up to
   ``graceful_shutdown_timeout`` seconds, then cancel them; close the pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from telemetry.metrics import worker_interceptors
from telemetry.versions import component_versions, versions_line
from workers.client import connect, temporal_target
from workers.devserver import temporal_version
from workers.proc import port_is_free

if TYPE_CHECKING:
    from temporalio.client import Client

    from config import Settings

#: pure, deterministic packages the workflow sandbox may share with the host instead of
#: re-importing per run (faster, and one ``Decimal`` context/pydantic class identity)
PASSTHROUGH_MODULES = (
    "domain",
    "config",
    "venues.models",
    "venues.errors",
    "messages.trade",
    "messages.scanner",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "annotated_types",
    "typing_extensions",
    "yaml",
    "dotenv",
    "decimal",
)

# slots, pollers, the sticky cache and its schedule-to-start timeout: ``settings.tuning``
# (config/tuning.py, with their defaults and why)
GRACEFUL_SHUTDOWN_S = 20.0
#: the most time between two heartbeats sent to the server (the SDK's default is 0.8 × the
#: heartbeat timeout): well inside the 2 s timeout of orders and reads and the 0.9 s of the
#: opening pair and the close round, whatever the server's lag (every beat of ``heartbeating()``)
HEARTBEAT_SEND_S = 0.25


class WorkerError(RuntimeError):
    """A user-facing start-up problem (exit code 2 in the CLI)."""


def ready_line(task_queue: str, address: str) -> str:
    return f"worker ready on task queue {task_queue} at {address}"


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning from ``settings.worker``: None (unversioned) without a build id.

    A versioned worker pins every workflow it starts to its version (``PINNED``): a running trade
    keeps the code it started on, and so do its alert children. The behaviour is the worker's
    default, not ``@workflow.defn(versioning_behavior=...)``: the server rejects a workflow task
    that names a behaviour from an unversioned worker (``versioning behavior cannot be specified
    without deployment options``), and unversioned stays the default of every other worker
    (``up``, tests, lab). What moves a workflow to a newer version is continue-as-new: trades,
    the scanner and reconcile continue as new with ``AUTO_UPGRADE`` (onto the current version)."""
    w = settings.worker
    if not w.build_id:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=w.deployment_name, build_id=w.build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


def version_line(settings: Settings) -> str:
    w = settings.worker
    if not w.build_id:
        return "worker unversioned (no worker.build_id): takes every task of its queue"
    return (f"worker version {w.deployment_name}.{w.build_id} (deployment {w.deployment_name}, build {w.build_id}): "
            "takes new work once this version is current")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def load_registrations(settings: Settings, pool: Any) -> tuple[list[type], list[Callable[..., Any]]]:
    """What the worker runs: ``workers.registry`` (the one list)."""
    from workers.registry import WORKFLOWS, build_activities

    return list(WORKFLOWS), list(build_activities(settings, pool))


_METRICS_SERVERS: list[Any] = []


def metrics_runtime(port: int, host: str = "127.0.0.1"):
    """A Temporal ``Runtime`` whose SDK metrics, together with hedgeflow's own
    (``telemetry.metrics.REGISTRY``), are served on ``http://host:port/metrics``; None if port
    is 0. The SDK exporter itself binds a private 127.0.0.1 port that the endpoint reads."""
    if not port:
        return None
    from temporalio.runtime import PrometheusConfig, Runtime

    from telemetry.metrics import serve_metrics
    from workers.client import telemetry_config  # the core's log lines into this process's log format

    if not port_is_free(port, host):
        raise WorkerError(
            f"port {port} (worker metrics) is already in use on {host}; "
            "change metrics_port (HEDGEFLOW__METRICS_PORT, 0 disables)"
        )
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        sdk_port = s.getsockname()[1]
    runtime = Runtime(telemetry=telemetry_config(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{sdk_port}")))
    _METRICS_SERVERS.append(serve_metrics(port, host, sdk_port))
    return runtime


def stop_metrics(server: Any = None) -> None:
    """Stop ``server`` (or every metrics endpoint this process serves)."""
    for srv in [server] if server is not None else list(_METRICS_SERVERS):
        if srv in _METRICS_SERVERS:
            _METRICS_SERVERS.remove(srv)
            srv.stop()


async def run_worker(
    settings: Settings,
    *,
    client: Client | None = None,
    stop_event: asyncio.Event | None = None,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable[..., Any]] | None = None,
    task_queue: str | None = None,
    graceful_shutdown_timeout: float = GRACEFUL_SHUTDOWN_S,
    on_ready: Callable[[Worker], None] | None = None,
    connect_timeout: float = 10.0,
    quiet: bool = False,
    promote: bool = False,
) -> None:
    """Run one worker until ``stop_event`` is set (or forever), then shut down gracefully.

    ``client``: use this client (no metrics runtime is created); else connect from the
    settings/environment. ``workflows``/``activities``: override the registrations (tests);
    by default ``workers.registry``. ``promote``: once polling, make this worker's version
    (``settings.worker.build_id``, required) the deployment's current version.
    Raises ``WorkerError`` for start-up problems, ``workers.client.TemporalUnavailable`` if the
    server cannot be reached, and whatever fatal error the SDK worker raises.
    """
    from config.settings import live_switch_env

    # the live interlock, whoever starts the worker: a ccxt venue needs mode: live and the switch
    refusal = settings.live_refusal(switch=live_switch_env(), env_ok=True)
    if refusal:
        raise WorkerError(refusal)
    if promote and not settings.worker.build_id:
        raise WorkerError("promote needs a versioned worker: set worker.build_id "
                          "(--build-id or HEDGEFLOW__WORKER__BUILD_ID)")
    stop_event = stop_event or asyncio.Event()
    own_metrics = None
    queue = task_queue or settings.temporal.task_queue
    if client is None:
        runtime = metrics_runtime(settings.metrics_port, settings.metrics_host)
        own_metrics = _METRICS_SERVERS[-1] if runtime is not None else None
        try:
            client = await connect(settings, timeout_s=connect_timeout, runtime=runtime)
        except BaseException:
            if own_metrics is not None:
                stop_metrics(own_metrics)
            raise
    address = client.service_client.config.target_host

    from venues.pool import GatewayPool
    from workers.budget_share import keep_share

    pool = GatewayPool(settings)
    await pool.warm()
    executor: concurrent.futures.ThreadPoolExecutor | None = None
    try:
        if workflows is None or activities is None:
            default_wfs, default_acts = load_registrations(settings, pool)
            workflows = default_wfs if workflows is None else workflows
            activities = default_acts if activities is None else activities
        if not workflows and not activities:
            raise WorkerError("no workflows and no activities to register")
        tuning = settings.tuning  # slots, pollers and sticky cache (config/tuning.py)
        if any(not _is_async(a) for a in activities):
            # all hedgeflow activities are async; a sync one (tests, future) gets threads
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=tuning.max_concurrent_activities, thread_name_prefix="activity"
            )
        worker = Worker(
            client,
            task_queue=queue,
            workflows=list(workflows),
            activities=list(activities),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
            max_concurrent_activities=tuning.max_concurrent_activities,
            max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
            max_concurrent_local_activities=tuning.max_concurrent_local_activities,
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(tuning.workflow_task_pollers),
            activity_task_poller_behavior=PollerBehaviorSimpleMaximum(tuning.activity_task_pollers),
            max_cached_workflows=tuning.max_cached_workflows,
            graceful_shutdown_timeout=timedelta(seconds=graceful_shutdown_timeout),
            interceptors=worker_interceptors(),
            # a worker that died holds its trades' next workflow task on its sticky queue: hand it
            # to another worker after 1 s, not the default 10 (a lone leg waits on that task)
            sticky_queue_schedule_to_start_timeout=timedelta(
                seconds=tuning.sticky_schedule_to_start_timeout_s),
            max_heartbeat_throttle_interval=timedelta(seconds=HEARTBEAT_SEND_S),
            deployment_config=deployment_config(settings),
        )
        run_task = asyncio.create_task(worker.run(), name="temporal-worker")
        stop_task = asyncio.create_task(stop_event.wait(), name="worker-stop")
        share_task = asyncio.create_task(keep_share(client, queue, pool), name="venue-budget-share")
        try:
            # ``is_running`` turns true once the namespace check passed and pollers are started
            while not worker.is_running and not run_task.done():  # noqa: ASYNC110 - SDK has no event
                await asyncio.sleep(0.02)
            if worker.is_running:
                if not quiet:
                    print(version_line(settings), flush=True)
                if promote:
                    await _promote(client, settings, run_task, quiet)
                if not quiet:
                    print(ready_line(queue, address), flush=True)
                if on_ready is not None:
                    on_ready(worker)
            await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if not run_task.done():
                if not quiet:
                    print(
                        f"worker stopping: polling stopped, in-flight activities get up to "
                        f"{graceful_shutdown_timeout:g} s",
                        flush=True,
                    )
                await worker.shutdown()
            await run_task  # re-raises a fatal worker error
        finally:
            stop_task.cancel()
            share_task.cancel()
            if not run_task.done():
                run_task.cancel()
                await asyncio.gather(run_task, return_exceptions=True)
    finally:
        await pool.close()
        if own_metrics is not None:
            stop_metrics(own_metrics)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    if not quiet:
        print("worker stopped", flush=True)


async def _promote(client: Client, settings: Settings, run_task: asyncio.Task[None], quiet: bool) -> None:
    """Make this worker's version current once the server knows it (its pollers register it),
    unless it was current before (``control.deployments.promote_if_new``: no implicit rollback)."""
    from control.deployments import DeploymentError, promote_if_new

    w = settings.worker
    assert w.build_id
    promote = asyncio.create_task(promote_if_new(client, w.deployment_name, w.build_id))
    await asyncio.wait({promote, run_task}, return_when=asyncio.FIRST_COMPLETED)
    if not promote.done():  # the worker failed first: its error is what the caller sees
        promote.cancel()
        return
    try:
        skipped = promote.result()
    except DeploymentError as exc:
        raise WorkerError(str(exc)) from None
    if not quiet:
        print(f"worker version {w.deployment_name}.{w.build_id} "
              + (f"not promoted: {skipped}" if skipped else "is now current"), flush=True)


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)


async def serve(settings: Settings, *, graceful_shutdown_timeout: float = GRACEFUL_SHUTDOWN_S,
                promote: bool = False) -> int:
    """``hedgeflow worker``: run until SIGINT/SIGTERM; a second signal forces exit."""
    # once per worker process, for incident reports: the versions this worker runs (stdout and the log)
    versions = versions_line(await asyncio.to_thread(component_versions, temporal_version))
    print(versions, flush=True)
    logging.getLogger("hedgeflow.worker").info(versions)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print(f"worker: {signal.Signals(signum).name} received, shutting down "
                  "(signal again to force)", file=sys.stderr, flush=True)
            stop.set()
        else:
            print("worker: forced exit", file=sys.stderr, flush=True)
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            signal.signal(sig, lambda s, f: loop.call_soon_threadsafe(on_signal, s))
    try:
        await run_worker(settings, stop_event=stop, graceful_shutdown_timeout=graceful_shutdown_timeout,
                         promote=promote)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass
    return 0


__all__ = [
    "GRACEFUL_SHUTDOWN_S",
    "PASSTHROUGH_MODULES",
    "WorkerError",
    "deployment_config",
    "load_registrations",
    "metrics_runtime",
    "ready_line",
    "run_worker",
    "serve",
    "version_line",
    "temporal_target",
    "workflow_runner",
]
