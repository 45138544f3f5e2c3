"""Test harness for trade workflows: simulated venues as real subprocesses, a worker, and
helpers that read the venues' own books through their admin API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from config.settings import DEMO_HL_WALLET, VenueConfig
from workers.proc import free_port
from workers.simproc import SimProcess

ROOT = Path(__file__).resolve().parents[1]
# a distinctive secret: the leak test greps histories and logs for it
TEST_API_KEY = "hf-test-key-7Qx"
TEST_API_SECRET = "hf-test-secret-Zr8w2LqT9vNc"
#: what a dialect's simulator needs besides the harness's key and secret, as the project starts it
#: (workers.simproc.sim_venue_args): Hyperliquid signs with the demo wallet, whose address is the
#: simulator's API key; OKX keys carry the demo passphrase
DIALECT_ARGS: dict[str, list[str]] = {
    "okx": ["--api-passphrase", VenueConfig.DEMO_OKX_PASSPHRASE],
    "hyperliquid": ["--api-key", DEMO_HL_WALLET],
}




class SimVenue(SimProcess):
    """A simulator child with this harness's credentials and a generous weight limit."""

    def __init__(self, name: str, port: int, state_file: Path, log_file: Path,
                 extra_args: list[str] | None = None) -> None:
        super().__init__(
            name, port, state_file, "--api-key", TEST_API_KEY, "--api-secret", TEST_API_SECRET,
            "--symbols", "40", "--weight-limit", "1000000", *(extra_args or []), log_file=log_file,
        )
        self.state_file = Path(state_file)

    def state(self) -> dict[str, Any]:
        return self.state_snapshot()

    # --- readings ------------------------------------------------------------------
    def position_qty(self, symbol: str) -> Decimal:
        venue_symbol = symbol.split(":")[0].replace("/", "")
        total = Decimal(0)
        for p in self.state()["positions"]:
            if p.get("symbol") in (symbol, venue_symbol) or p.get("venue_symbol") == venue_symbol:  # (HL: X/USDC:USDC)
                total += Decimal(str(p.get("positionAmt", p.get("qty", "0"))))
        return total

    def wallet(self) -> Decimal:
        b = self.state()["balances"]
        usdt = b.get("USDT", b)
        if isinstance(usdt, dict):
            for key in ("walletBalance", "wallet", "balance", "total"):
                if key in usdt:
                    return Decimal(str(usdt[key]))
        return Decimal(str(usdt))

    def orders(self, client_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        orders = self.state()["orders"]
        if client_ids is None:
            return orders
        wanted = set(client_ids)
        return [o for o in orders if o["clientOrderId"] in wanted]


def start_sims(tmp: Path, names: Iterable[str], extra_args: list[str] | None = None,
               dialects: dict[str, str] | None = None) -> dict[str, SimVenue]:
    """One simulator process per name; ``dialects``: name → wire dialect (default binance)."""
    sims = {}
    for name in names:
        d = (dialects or {}).get(name, "binance")
        args = [*(extra_args or []), *(["--dialect", d] if d != "binance" else []), *DIALECT_ARGS.get(d, [])]
        sim = SimVenue(name, free_port(), tmp / f"{name}.sqlite", tmp / f"{name}.log", args)
        sim.dialect = d
        sim.start()
        sims[name] = sim
    return sims


#: the client limiter of test venues, at 10× a venue's default (40 weight/s = Binance's 2400/min):
#: a test trade's few reads (income weighs 30) then never queue behind one another; the limiter
#: itself is tested in test_gateway_safety, and the simulators still enforce their weight limit
TEST_VENUE_RPS = 400


def settings_for(sims: dict[str, SimVenue], **trade: Any) -> Settings:
    # Hyperliquid: no key or secret given, so the venue signs with the demo wallet (VenueConfig's default)
    venues = [
        {"name": s.name, "kind": "sim", "base_url": s.url, "requests_per_second": TEST_VENUE_RPS,
         **({} if getattr(s, "dialect", "binance") == "hyperliquid" else
            {"api_key": TEST_API_KEY, "api_secret": TEST_API_SECRET}),
         **({"dialect": s.dialect} if getattr(s, "dialect", "binance") != "binance" else {})}
        for s in sims.values()
    ]
    # hold until told otherwise: synthetic spreads can be negative, which would end a test trade early
    trade_defaults = {"monitor_interval_s": 0.5, "verify_timeout_s": 5, "close_retry_max_s": 2,
                      "exit_spread_bps": -1000000}
    state_dir = next(iter(sims.values())).state_file.parent  # the test's tmp dir, ledger included
    env = {"HEDGEFLOW__VENUES": json.dumps(venues), "HEDGEFLOW__METRICS_PORT": "0",
           "HEDGEFLOW__STATE_DIR": str(state_dir)}
    for k, v in {**trade_defaults, **trade}.items():
        env[f"HEDGEFLOW__TRADE__{k.upper()}"] = str(v)
    return load_settings(environ=env)


async def wait_for(predicate, timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    """Poll an async or sync predicate until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
