"""Command line of the simulated venue (``python -m venues.sim`` / ``hedgeflow sim``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from decimal import Decimal, InvalidOperation

from .dialects import DIALECTS
from .options import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_FUNDING_INTERVAL_S,
    ENV_API_KEY,
    ENV_API_SECRET,
    SimOptions,
)
from .server import start_sim

DEFAULTS = SimOptions()  # the CLI's defaults are SimOptions' own


def _decimal(v: str) -> Decimal:
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {v!r}") from None
    if not d.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {v!r}")
    return d


def _positive_int(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {v!r}") from None
    if i <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {v!r}")
    return i


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the simulator's arguments to ``parser`` (or a new one) and return it."""
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="python -m venues.sim",
            description="Simulated venue speaking the Binance USD-M futures REST dialect.",
        )
    parser.add_argument("--name", required=True, help="venue name (also selects replay rows)")
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 = any free port)")
    parser.add_argument("--dialect", default="binance", choices=sorted(DIALECTS),
                        help="wire format the venue speaks (default binance)")
    parser.add_argument("--api-passphrase", default=None, metavar="P",
                        help="API passphrase (okx dialect: required; env HEDGEFLOW_SIM_API_PASSPHRASE)")
    parser.add_argument("--host", default=DEFAULTS.host)
    parser.add_argument("--seed", type=int, default=None, help="seed of the synthetic market (default: from name)")
    parser.add_argument("--replay", metavar="FILE", help="replay CSV (time,venue,symbol,funding_rate,mark_price)")
    parser.add_argument("--speed", type=float, default=DEFAULTS.speed, help="replay speed: data seconds per wall second")
    parser.add_argument("--replay-start-ms", type=int, default=None, metavar="MS",
                        help="wall time (epoch ms) of the replay's first row; give every simulator the same one "
                             "so that their clocks agree (default: when this one starts)")
    parser.add_argument("--state", metavar="FILE", help="SQLite state file (default .hedgeflow/sim-NAME.sqlite)")
    parser.add_argument("--api-key", default=None, help=f"API key (env {ENV_API_KEY}, default {DEFAULT_API_KEY})")
    parser.add_argument("--api-secret", default=None,
                        help=f"API secret (env {ENV_API_SECRET}, default {DEFAULT_API_SECRET})")
    parser.add_argument("--funding-interval", type=_positive_int, default=None,
                        metavar="SECONDS",
                        help=f"funding settlement interval in wall seconds (default: the dialect's own, "
                             f"{DEFAULT_FUNDING_INTERVAL_S} s; hyperliquid 3600 s)")
    parser.add_argument("--initial-balance", type=_decimal, default=DEFAULTS.initial_balance, metavar="USDT")
    parser.add_argument("--balance", type=_decimal, default=None, metavar="USD",
                        help=f"starting USDT wallet of a new state file (default {DEFAULTS.initial_balance}; "
                             "wins over --initial-balance)")
    parser.add_argument("--taker-fee", type=_decimal, default=None, metavar="RATE",
                        help="fee of fills that take liquidity, fraction of notional (default: the dialect's base "
                             "tier: binance 0.0005, bybit 0.00055, okx 0.0005, hyperliquid 0.00045)")
    parser.add_argument("--maker-fee", type=_decimal, default=None, metavar="RATE",
                        help="fee of resting orders' fills (negative: a rebate; default: binance 0.0002, "
                             "bybit 0.0002, okx 0.0002, hyperliquid 0.00015)")
    parser.add_argument("--tick-ms", type=_positive_int, default=DEFAULTS.tick_ms, metavar="MS",
                        help=f"tick of the price path: resting orders matched, liquidations checked "
                             f"(default {DEFAULTS.tick_ms})")
    parser.add_argument("--symbols", type=_positive_int, default=None, metavar="N",
                        help="total number of symbols (synthetic S001USDT... beyond the 3 defaults)")
    parser.add_argument("--weight-limit", type=_positive_int, default=DEFAULTS.weight_limit, help="request weight per minute")
    parser.add_argument("--leverage", type=_positive_int, default=DEFAULTS.default_leverage, help="default leverage")
    parser.add_argument("--book-levels", type=_positive_int, default=DEFAULTS.book_levels)
    parser.add_argument("--book-half-spread-bps", type=_decimal, default=DEFAULTS.book_half_spread_bps)
    parser.add_argument("--book-level-step-bps", type=_decimal, default=DEFAULTS.book_level_step_bps)
    parser.add_argument("--book-level-notional", type=_decimal, default=DEFAULTS.book_level_notional, metavar="USDT",
                        help="depth per book level in USDT notional")
    return parser


def _seed_from_name(name: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def options_from_args(args: argparse.Namespace) -> SimOptions:
    if args.replay and args.speed <= 0:
        raise ValueError("--speed must be positive")
    if getattr(args, "dialect", None) == "okx" and not (args.api_passphrase or os.environ.get("HEDGEFLOW_SIM_API_PASSPHRASE")):
        raise ValueError("--api-passphrase is required for --dialect okx")
    return SimOptions(
        name=args.name,
        host=args.host,
        port=args.port,
        seed=args.seed if args.seed is not None else _seed_from_name(args.name),
        replay=args.replay,
        speed=args.speed,
        replay_wall0_ms=args.replay_start_ms,
        state=args.state,
        api_key=args.api_key or os.environ.get(ENV_API_KEY) or DEFAULT_API_KEY,
        api_secret=args.api_secret or os.environ.get(ENV_API_SECRET) or DEFAULT_API_SECRET,
        funding_interval=args.funding_interval,
        initial_balance=args.initial_balance,
        balance=args.balance,
        taker_fee=args.taker_fee,
        maker_fee=getattr(args, "maker_fee", None),
        tick_ms=getattr(args, "tick_ms", DEFAULTS.tick_ms),
        symbols=args.symbols,
        weight_limit=args.weight_limit,
        default_leverage=args.leverage,
        book_levels=args.book_levels,
        book_half_spread_bps=args.book_half_spread_bps,
        book_level_step_bps=args.book_level_step_bps,
        book_level_notional=args.book_level_notional,
        dialect=args.dialect,
        api_passphrase=args.api_passphrase or os.environ.get("HEDGEFLOW_SIM_API_PASSPHRASE"),
    )


async def _serve(opts: SimOptions) -> None:
    handle = await start_sim(opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    print(f"sim {opts.name} listening on {handle.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await handle.stop()


def run(args: argparse.Namespace) -> int:
    """Run one simulated venue until SIGINT/SIGTERM; returns the exit code."""
    from config import ConfigError
    from config.logs import configure_logging, logging_from_env

    try:  # JSON lines on stderr like every hedgeflow process; its credentials masked
        configure_logging(logging_from_env(), secrets=[args.api_secret, os.environ.get(ENV_API_SECRET),
                                                       args.api_passphrase])
    except ConfigError as e:
        print(f"sim {getattr(args, 'name', '?')}: {e}", file=sys.stderr)
        return 2
    try:
        opts = options_from_args(args)
        asyncio.run(_serve(opts))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as e:
        print(f"sim {getattr(args, 'name', '?')}: {e}", file=sys.stderr)
        return 1
    return 0
