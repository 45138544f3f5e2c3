"""``hedgeflow up``: the embedded default — Temporal dev server, simulated venues and one worker;
with ``--temporal external`` the configured cluster (``temporal`` settings, Temporal's own
``TEMPORAL_*`` environment configuration filling the rest) instead of a dev server."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

HELP = (
    "start the Temporal dev server (or, with --temporal external, use the configured cluster), the "
    "simulated venues of the profile and one worker as child processes, print their URLs and supervise "
    "them until Ctrl-C"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=["demo", "replay", "live"], default=None,
                   help="demo (default): three simulated venues; replay: one simulated venue per venue "
                   "in --data; live: real venues from the config (needs --i-understand-this-is-live)")
    p.add_argument("--data", metavar="FILE", help="replay CSV (time,venue,symbol,funding_rate,mark_price)")
    p.add_argument("--speed", type=float, metavar="X", help="replay speed multiplier")
    p.add_argument("--no-scanner", action="store_true", help="start everything but the scanner workflow")
    p.add_argument("--temporal", choices=["embedded", "external"], default="embedded",
                   help="embedded (default): start the Temporal dev server (plaintext, on temporal.address); "
                   "external: start none and use the configured cluster (temporal.address, namespace, tls, "
                   "api_key, or TEMPORAL_* / the temporal CLI's profile for what the settings leave out)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where the dev server db, simulator state and logs live (default: state_dir "
                   "setting, .hedgeflow/)")


def trades_live(args: argparse.Namespace) -> bool:
    """The live interlock (``hedgeflow.cli.settings_from``): ``up`` starts a worker, so with a ccxt
    venue or --profile live it needs --i-understand-this-is-live and mode: live."""
    return True


def run(args: argparse.Namespace) -> int:
    from config import load_settings
    from hedgeflow.cli import CliError, settings_from
    from workers.supervisor import Supervisor
    from workers.up_plan import UpError, write_replay_config

    external = args.temporal == "external"
    if not external:  # the dev server is local and plaintext: the shell's Temporal profile is not for it
        os.environ["HEDGEFLOW__TEMPORAL__ENV_CONFIG"] = "false"  # for this process and every child
    settings = settings_from(args)  # the live interlock: refuses (exit 2) before anything starts
    if not external and (settings.temporal.tls is not None or settings.temporal.api_key is not None):
        raise CliError("temporal.tls / temporal.api_key are set, but the dev server `up` starts is plaintext; "
                       "use `hedgeflow up --temporal external` for that cluster, or remove them", 2)
    # the children log as this process does: the simulators read only these two variables
    os.environ["HEDGEFLOW__LOGGING__LEVEL"] = settings.logging.level
    os.environ["HEDGEFLOW__LOGGING__FORMAT"] = settings.logging.format
    profile = settings.profile
    if (args.data or args.speed is not None) and profile != "replay":
        raise CliError("--data and --speed only apply to --profile replay", 2)
    if profile == "replay" and not args.data:
        raise CliError("--profile replay needs --data FILE (see the replay format in the README)", 2)

    state_dir = Path(args.state_dir or settings.state_dir)
    state_dir = state_dir.resolve()
    config_path = getattr(args, "config", None) or os.environ.get("HEDGEFLOW_CONFIG") or None
    try:
        if profile == "replay":
            config_path = str(write_replay_config(config_path, args.data, state_dir, settings.venues))
            # the scanner measures its horizon in venue hours: one passes in 3600/speed wall seconds
            os.environ["HEDGEFLOW__SCANNER__TIME_SCALE"] = f"{args.speed or 1.0:g}"
            (state_dir / "replay-data.txt").write_text(str(Path(args.data).resolve()))
            settings = load_settings(config_path, profile="replay")
        settings = settings.model_copy(update={"state_dir": state_dir})
        sup = Supervisor(
            settings,
            config_path=config_path,
            state_dir=state_dir,
            scanner=not args.no_scanner,
            replay_data=args.data,
            replay_speed=args.speed,
            external=external,
        )
        return asyncio.run(_main(sup))
    except UpError as exc:
        raise CliError(str(exc), exc.code) from None


async def _main(sup) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    count = 0

    def on_signal(signum: int) -> None:
        nonlocal count
        count += 1
        if count == 1:
            sup.say(f"{signal.Signals(signum).name} received; stopping every child (again to force)")
            stop.set()
        else:
            sup.say("forced: killing every child")
            sup.kill_all()
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await sup.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        sys.stdout.flush()
