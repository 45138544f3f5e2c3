"""``hedgeflow resume``."""

from __future__ import annotations

import argparse
import asyncio

HELP = "resume opening trades after `hedgeflow halt` (also un-pauses the scanner)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def trades_live(args: argparse.Namespace) -> bool:
    """The live interlock: resuming lets the scanner open trades again."""
    return True


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from control.scanner import ScannerUnavailable, signal_scanner
    from hedgeflow.cli import CliError, settings_from
    from workers.client import connect

    settings = settings_from(args)
    client = await connect(settings)
    try:
        await signal_scanner(client, "unhalt")
        await signal_scanner(client, "resume")
    except ScannerUnavailable as exc:
        raise CliError(str(exc)) from None
    print("resumed: the scanner may open trades again")
    return 0
