"""The ``hedgeflow`` command line.

Each sub-command lives in ``hedgeflow/commands/<name>.py`` and exposes
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Commands that need settings call
``hedgeflow.cli.settings_from(args)``, which also sets up the process's logging (``logging``
settings: JSON lines on stderr, secrets masked); invalid configuration exits with code 2 and one
line per bad field on stderr. ``main`` ends the process without ever letting Python finalize
beside a Temporal core thread (``workers.client.owned_runtime``, ``_end_process``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from config import ConfigError, Settings, load_settings
from config.settings import LIVE_SWITCH_ENV, LIVE_SWITCH_FLAG, live_switch_env

COMMANDS = [
    "up",
    "worker",
    "sim",
    "trade",
    "scanner",
    "halt",
    "resume",
    "status",
    "reconcile",
    "report",
    "bench",
    "chaos",
    "config",
    "bootstrap",
    "venues",
    "backtest",
    "upgrade",
]


class CliError(Exception):
    """A user-facing error: printed to stderr without a traceback, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    """Load the settings; for a command that can send orders (its module's ``trades_live(args)``)
    apply the live interlock (``Settings.live_refusal``) *before* anything connects: a config
    with a live venue (``kind: ccxt``, ``environment: live``; demo and testnet accounts are not
    live) or profile live needs ``mode: live`` and
    ``--i-understand-this-is-live`` (``hedgeflow worker`` also accepts
    ``HEDGEFLOW_I_UNDERSTAND_THIS_IS_LIVE=1``); else ``CliError`` exit 2 naming what is missing."""
    from workers.logs import setup_process_logging

    settings = load_settings(getattr(args, "config", None), profile=getattr(args, "profile", None) or None)
    setup_process_logging(settings)  # JSON lines on stderr from here on, every secret of the settings masked
    trades_live = getattr(args, "_trades_live", None)
    if trades_live is not None and trades_live(args):
        env_ok = bool(getattr(args, "_live_env_ok", False))
        switch = bool(getattr(args, "live_confirmed", False)) or (env_ok and live_switch_env())
        refusal = settings.live_refusal(switch=switch, env_ok=env_ok)
        if refusal:
            raise CliError(refusal, 2)
        if switch and (settings.live_venues() or settings.profile == "live"):
            os.environ[LIVE_SWITCH_ENV] = "1"  # confirmed: the worker this process runs or starts sees it
    return settings


def _available() -> dict[str, object]:
    mods = {}
    for name in COMMANDS:
        try:
            mods[name] = importlib.import_module(f"hedgeflow.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hedgeflow.commands.{name}":
                raise
    return mods


def _add_live_switch(p: argparse.ArgumentParser, env_ok: bool) -> None:
    """``--i-understand-this-is-live`` on ``p`` and on its sub-actions (``trade open …``)."""
    p.add_argument(LIVE_SWITCH_FLAG, dest="live_confirmed", action="store_true", default=argparse.SUPPRESS,
                   help="required, with mode: live, when a venue is kind ccxt (real money)"
                   + (f"; a non-interactive worker may set {LIVE_SWITCH_ENV}=1 instead" if env_ok else ""))
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_live_switch(child, env_ok)


class _VersionAction(argparse.Action):
    """``--version``: hedgeflow's, ccxt's, temporalio's and the Temporal CLI's versions on one line
    (``telemetry.versions``), worked out only when asked (the CLI's costs a subprocess)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: object = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from telemetry.versions import component_versions, versions_line
        from workers.devserver import temporal_version

        print(versions_line(component_versions(temporal_version)), flush=True)
        parser.exit()


def build_parser(named: set[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``named`` (the words about to be parsed) only the commands
    among them get their arguments, the others just their name and help: a CLI start then skips
    the simulator's imports that ``sim``'s arguments need (~0.4 s)."""
    parser = argparse.ArgumentParser(
        prog="hedgeflow",
        description="Durable cross-exchange funding-rate arbitrage on Temporal.",
    )
    parser.add_argument("--version", action=_VersionAction,
                        help="print hedgeflow's, ccxt's, temporalio's and the Temporal CLI's versions and exit")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config file (default: $HEDGEFLOW_CONFIG, else built-in defaults of the profile)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, mod in _available().items():
        p = sub.add_parser(name, help=getattr(mod, "HELP", None), description=getattr(mod, "HELP", None))
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if named is not None and name not in named:
            continue  # not this invocation's command: ``hedgeflow --help`` lists it, nothing parses it
        mod.add_arguments(p)
        trades_live = getattr(mod, "trades_live", None)
        if trades_live is not None:  # the live interlock's switch, on every command that can send orders
            _add_live_switch(p, getattr(mod, "LIVE_ENV_SWITCH", False))
        p.set_defaults(_run=mod.run, _trades_live=trades_live, _live_env_ok=getattr(mod, "LIVE_ENV_SWITCH", False))
    return parser


def _run(args: argparse.Namespace) -> int:
    from workers.client import TemporalUnavailable

    try:
        return int(args._run(args) or 0)
    except TemporalUnavailable as exc:  # "cannot reach Temporal at ADDRESS; is `hedgeflow up` running?"
        print(f"hedgeflow: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"hedgeflow: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"hedgeflow: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - printed here so that no traceback keeps a client (and its runtime) alive
        traceback.print_exc()
        return 1


def main(argv: list[str] | None = None) -> int:
    """Run one command. Called without ``argv`` (the ``hedgeflow`` console script, ``python -m
    hedgeflow``) this is the whole process: it ends here, see ``_end_process``."""
    from workers.client import owned_runtime

    args = build_parser(set(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    with owned_runtime():  # the Temporal clients of this command, and their Rust threads, end in here
        code = _run(args)
    if argv is None:
        _end_process(code)
    return code


def _end_process(code: int) -> None:
    """Exit with ``code`` without ever finalizing Python beside a live Temporal core thread.

    ``owned_runtime`` has dropped this command's Temporal runtime, which joins the SDK's Tokio
    threads, so normally none is left and the interpreter shuts down as usual (atexit handlers,
    buffered files). If one survived — a runtime this command did not own, or the platform
    cannot tell (no ``/proc``) — finalizing would race it (the "PyGILState_Release ... finalizing"
    abort, exit 134, see ``workers.client``): the work is done, so flush what we wrote and leave
    with ``os._exit``, which runs no finalization at all."""
    from workers.client import foreign_threads

    if foreign_threads() == 0:
        sys.exit(code)
    logging.shutdown()  # flush and close the log handlers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
