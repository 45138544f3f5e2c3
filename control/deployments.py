"""Client-side Worker Versioning operations, once: what a Worker Deployment holds, make a version
current, which version a workflow runs on. Used by ``hedgeflow upgrade``, by ``hedgeflow worker
--promote`` and by the tests; the same calls as ``temporal worker deployment describe`` and
``set-current-version``.

A versioned worker (``worker.build_id`` set) is version ``DEPLOYMENT.BUILD_ID`` of the deployment
``worker.deployment_name``. New workflows go to the *current* version; a pinned workflow (a trade)
stays on the version it started on until it continues as new; auto-upgrade workflows (scanner,
reconcile, alerts) move at their next workflow task. A version that is no longer current is
*draining* while pinned workflows still run on it and *drained* once none does: then its
workers can stop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import VersionDrainageStatus, WorkerDeploymentVersionStatus
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    UpdateWorkflowExecutionOptionsRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import AutoUpgradeVersioningOverride, VersioningBehavior
from temporalio.service import RPCError, RPCStatusCode

from config import Settings
from config.names import SCANNER_ID
from workflows.reconcile import WORKFLOW_ID as RECONCILE_ID

#: long-running workflows that follow the current version at once when a version is promoted
#: (trades keep theirs): an auto-upgrade override, so their old version can drain while they run
FOLLOWERS = (SCANNER_ID, RECONCILE_ID)

IDENTITY = "hedgeflow"


class DeploymentError(Exception):
    """A deployment operation that could not be done; the message says why and what to do."""


@dataclass
class VersionView:
    build_id: str
    status: str  # inactive · current · ramping · draining · drained (Temporal's version status)
    drainage: str  # "", draining, drained (set once the version stopped being current)
    created: str = ""


@dataclass
class DeploymentView:
    name: str
    current: str | None  # build id of the current version (None: unversioned workers get new work)
    ramping: str | None
    versions: list[VersionView] = field(default_factory=list)

    def version(self, build_id: str) -> VersionView | None:
        return next((v for v in self.versions if v.build_id == build_id), None)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _status(value: int) -> str:
    return WorkerDeploymentVersionStatus.Name(value).removeprefix("WORKER_DEPLOYMENT_VERSION_STATUS_").lower()


def _drainage(value: int) -> str:
    name = VersionDrainageStatus.Name(value).removeprefix("VERSION_DRAINAGE_STATUS_").lower()
    return "" if name == "unspecified" else name


async def describe(client: Client, deployment: str) -> DeploymentView | None:
    """The deployment's versions and routing, or None when no versioned worker ever polled it."""
    try:
        resp = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    info = resp.worker_deployment_info
    rc = info.routing_config
    versions = [
        VersionView(build_id=s.deployment_version.build_id, status=_status(s.status),
                    drainage=_drainage(s.drainage_status),
                    created=s.create_time.ToDatetime().isoformat(timespec="seconds") if s.HasField("create_time") else "")
        for s in info.version_summaries
    ]
    return DeploymentView(
        name=info.name,
        current=rc.current_deployment_version.build_id or None if rc.HasField("current_deployment_version") else None,
        ramping=rc.ramping_deployment_version.build_id or None if rc.HasField("ramping_deployment_version") else None,
        versions=sorted(versions, key=lambda v: v.created),
    )


async def set_current(client: Client, deployment: str, build_id: str, *, wait_s: float = 30.0) -> None:
    """Make ``DEPLOYMENT.BUILD_ID`` current: from now on new workflows, auto-upgrade workflows and
    trades that continue as new go to it. The version must exist, i.e. one of its workers polled
    (a worker that just started registers within a second or two): waits up to ``wait_s`` for it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace, deployment_name=deployment, build_id=build_id, identity=IDENTITY))
            return
        except RPCError as exc:
            unknown = exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)
            if not unknown or time.monotonic() >= deadline:
                hint = (f"{exc.message} (is a worker of build {build_id} polling deployment {deployment!r}? "
                        f"start one with `hedgeflow worker --build-id {build_id}` first)") if unknown else exc.message
                raise DeploymentError(f"cannot make {deployment}.{build_id} current: {hint}") from None
        await asyncio.sleep(0.5)


async def follow_current(client: Client, workflow_ids: tuple[str, ...] = FOLLOWERS) -> list[str]:
    """Give the running ones of ``workflow_ids`` an auto-upgrade versioning override (``temporal
    workflow update-options --versioning-override-behavior auto_upgrade``): their next workflow
    task goes to the current version, and so does every later one. Returns the ids moved."""
    moved = []
    for wf_id in workflow_ids:
        try:
            desc = await client.get_workflow_handle(wf_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        if desc.status != WorkflowExecutionStatus.RUNNING:
            continue
        await client.workflow_service.update_workflow_execution_options(UpdateWorkflowExecutionOptionsRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=wf_id),
            workflow_execution_options=WorkflowExecutionOptions(
                versioning_override=AutoUpgradeVersioningOverride()._to_proto()),
            update_mask=FieldMask(paths=["versioning_override"]),
            identity=IDENTITY,
        ))
        moved.append(wf_id)
    return moved


async def promote(client: Client, deployment: str, build_id: str, *, wait_s: float = 30.0) -> list[str]:
    """Make ``build_id`` current and move the scanner and reconcile onto it (``follow_current``);
    running trades stay on their version. Returns the ids moved."""
    await set_current(client, deployment, build_id, wait_s=wait_s)
    return await follow_current(client)


#: statuses of a version that has never been current: the only ones a worker promotes by itself
NEVER_CURRENT = ("inactive", "created", "unspecified")


async def promote_if_new(client: Client, deployment: str, build_id: str, *, wait_s: float = 30.0) -> str | None:
    """``hedgeflow worker --promote``: promote ``build_id`` unless it was current before. A worker
    of an older build that restarts (a crash, a host reboot) must not roll the deployment back:
    a version that is current already, or draining/drained, is left as it is. Returns why
    nothing was done, or None once promoted."""
    deadline = time.monotonic() + wait_s
    while True:
        view = await describe(client, deployment)
        mine = view.version(build_id) if view else None
        if mine is not None or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)  # the worker's pollers register its version within a second or two
    if mine is not None and view is not None and view.current == build_id:
        return f"{deployment}.{build_id} is current already"
    if mine is not None and mine.status not in NEVER_CURRENT:
        return (f"{deployment}.{build_id} was current before (now {mine.status}); not rolling back by itself: "
                f"`hedgeflow upgrade promote {build_id}` does it on purpose")
    await promote(client, deployment, build_id, wait_s=max(1.0, deadline - time.monotonic()))
    return None


@dataclass
class WorkflowVersion:
    behavior: str  # pinned · auto_upgrade · unspecified (unversioned)
    build_id: str | None  # the version it runs on (None: unversioned)


async def workflow_version(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowVersion:
    """Which version a workflow execution runs on, from its versioning info (``temporal workflow describe``)."""
    desc = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    vi = desc.raw_description.workflow_execution_info.versioning_info
    behavior = VersioningBehavior(vi.behavior).name.lower()
    build = vi.deployment_version.build_id if vi.HasField("deployment_version") else ""
    return WorkflowVersion(behavior=behavior, build_id=build or None)


def deployment_name(settings: Settings) -> str:
    return settings.worker.deployment_name


async def trades_by_version(client: Client, task_queue: str) -> dict[str, list[str]]:
    """Running trades of ``task_queue`` grouped by the build id they run on ("" = unversioned).
    Each trade is described (the visibility listing does not carry the versioning info)."""
    from control.trades import running_query

    ids = [w.id async for w in client.list_workflows(running_query(task_queue))]
    versions = await asyncio.gather(*(workflow_version(client, i) for i in ids), return_exceptions=True)
    out: dict[str, list[str]] = {}
    for wf_id, v in zip(ids, versions, strict=True):
        if isinstance(v, RPCError):
            continue  # ended between the listing and the describe
        if isinstance(v, BaseException):
            raise v
        out.setdefault(v.build_id or "", []).append(wf_id)
    return out
