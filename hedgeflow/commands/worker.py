"""``hedgeflow worker``: one worker process on the ``hedgeflow`` task queue."""

from __future__ import annotations

import argparse
import asyncio

HELP = (
    "run one Temporal worker (all workflows and activities) against the temporal connection profile: "
    "the settings' temporal section, then TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TEMPORAL_TLS_* and "
    "Temporal's profile file for what it leaves out (default 127.0.0.1:7233, namespace 'default')"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long in-flight activities may finish before they are cancelled "
        "(default 20)",
    )
    p.add_argument(
        "--build-id",
        default=None,
        metavar="ID",
        help="run as version DEPLOYMENT.ID of the Worker Deployment (worker.build_id, "
        "HEDGEFLOW__WORKER__BUILD_ID; e.g. the git sha); it takes new work once that version is current. "
        "Unset: unversioned",
    )
    p.add_argument(
        "--deployment-name",
        default=None,
        metavar="NAME",
        help="the Worker Deployment (worker.deployment_name, default hedgeflow)",
    )
    p.add_argument(
        "--promote",
        action="store_true",
        help="once polling, make this version current (new trades and the scanner move to it; "
        "running trades stay on their version); needs --build-id",
    )


#: the live interlock: with a ccxt venue a worker needs mode: live and --i-understand-this-is-live,
#: or (non-interactive, e.g. a service unit) HEDGEFLOW_I_UNDERSTAND_THIS_IS_LIVE=1
LIVE_ENV_SWITCH = True


def trades_live(args: argparse.Namespace) -> bool:
    return True


def run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import CliError, settings_from
    from workers.client import TemporalUnavailable
    from workers.worker import GRACEFUL_SHUTDOWN_S, WorkerError, serve

    settings = settings_from(args)
    settings = with_version(settings, args.build_id, args.deployment_name)
    timeout = GRACEFUL_SHUTDOWN_S if args.graceful_timeout is None else args.graceful_timeout
    try:
        return asyncio.run(serve(settings, graceful_shutdown_timeout=timeout, promote=args.promote))
    except TemporalUnavailable as exc:
        raise CliError(str(exc), 1) from None
    except WorkerError as exc:
        raise CliError(str(exc), 2) from None


def with_version(settings, build_id: str | None, deployment_name: str | None):
    """``settings`` with ``--build-id``/``--deployment-name`` applied to its ``worker`` section,
    validated as the section is (a bad value: exit 2 naming the option and the fix)."""
    from pydantic import ValidationError

    from config.settings import WorkerConfig
    from hedgeflow.cli import CliError

    if build_id is None and deployment_name is None:
        return settings
    data = settings.worker.model_dump()
    data.update({k: v for k, v in (("build_id", build_id), ("deployment_name", deployment_name)) if v is not None})
    try:
        worker = WorkerConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        opt = "--" + str(err["loc"][0]).replace("_", "-")
        raise CliError(f"{opt}: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})", 2) from None
    return settings.model_copy(update={"worker": worker})
