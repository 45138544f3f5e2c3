"""Settings of one simulated venue: :class:`SimOptions` and the defaults the CLI falls back to.

The demo credentials are the project's single set, defined in :mod:`config.settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

from config.settings import DEMO_API_KEY, DEMO_API_SECRET

DEFAULT_API_KEY = DEMO_API_KEY
DEFAULT_API_SECRET = DEMO_API_SECRET
DEFAULT_FUNDING_INTERVAL_S = 28800
ENV_API_KEY = "HEDGEFLOW_SIM_API_KEY"
ENV_API_SECRET = "HEDGEFLOW_SIM_API_SECRET"

D = Decimal


@dataclass
class SimOptions:
    name: str = "sim"
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    replay: str | None = None
    speed: float = 1.0
    #: wall ms at which the replay's first row is "now" (``up`` gives every simulator the same
    #: one, so their clocks agree); None: when this simulator starts. A resumed state keeps its own.
    replay_wall0_ms: int | None = None
    state: str | None = None  # None → .hedgeflow/sim-NAME.sqlite; ":memory:" allowed
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    funding_interval: int | None = None  # None: the dialect's own (8 h; Hyperliquid 1 h)
    initial_balance: Decimal = D("100000")
    balance: Decimal | None = None  # starting USDT wallet (--balance); overrides initial_balance
    #: fee rates (fraction of notional) of fills that take liquidity / of resting orders that are
    #: filled; None: the dialect's base tier (venues.sim.dialects.Dialect.taker_fee / maker_fee)
    taker_fee: Decimal | None = None
    maker_fee: Decimal | None = None
    #: the price path's tick (ms): resting orders are matched and liquidations checked at least this often
    tick_ms: int = 1000
    symbols: int | None = None
    weight_limit: int = 2400
    default_leverage: int = 20
    book_levels: int = 20
    book_half_spread_bps: Decimal = D("1")
    book_level_step_bps: Decimal = D("1")
    book_level_notional: Decimal = D("50000")
    dialect: str = "binance"  # wire format (venues.sim.dialects.DIALECTS)
    api_passphrase: str | None = None  # OKX's third credential (required by the okx dialect)

    @property
    def start_balance(self) -> Decimal:
        return D(self.balance if self.balance is not None else self.initial_balance)

    @property
    def state_path(self) -> str:
        return self.state or os.path.join(".hedgeflow", f"sim-{self.name}.sqlite")
