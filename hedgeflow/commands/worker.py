"""``hedgeflow worker``: one worker process on the ``hedgeflow`` task queue."""

from __future__ import annotations

import argparse
import asyncio

HELP = (
    "run one Temporal worker (all workflows and activities) against TEMPORAL_ADDRESS "
    "(default 127.0.0.1:7233) and TEMPORAL_NAMESPACE (default 'default')"
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
    timeout = GRACEFUL_SHUTDOWN_S if args.graceful_timeout is None else args.graceful_timeout
    try:
        return asyncio.run(serve(settings, graceful_shutdown_timeout=timeout))
    except TemporalUnavailable as exc:
        raise CliError(str(exc), 1) from None
    except WorkerError as exc:
        raise CliError(str(exc), 2) from None
