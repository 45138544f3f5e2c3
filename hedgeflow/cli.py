"""The ``hedgeflow`` command line.

Each sub-command lives in ``hedgeflow/commands/<name>.py`` and exposes
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Commands that need settings call
``hedgeflow.cli.settings_from(args)``; invalid configuration exits with code 2 and one line
per bad field on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from config import ConfigError, Settings, load_settings

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
]


class CliError(Exception):
    """A user-facing error: printed to stderr without a traceback, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(getattr(args, "config", None), profile=getattr(args, "profile", None) or None)


def _available() -> dict[str, object]:
    mods = {}
    for name in COMMANDS:
        try:
            mods[name] = importlib.import_module(f"hedgeflow.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hedgeflow.commands.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hedgeflow",
        description="Durable cross-exchange funding-rate arbitrage on Temporal.",
    )
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
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"hedgeflow: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"hedgeflow: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
