"""``hedgeflow sim``: one simulated venue (Binance USD-M futures dialect)."""

from __future__ import annotations

import argparse

HELP = "run one simulated venue that real ccxt (binanceusdm) trades against"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from venues.sim.__main__ import build_parser

    build_parser(p)


def run(args: argparse.Namespace) -> int:
    from venues.sim.__main__ import run as run_sim

    return run_sim(args)
