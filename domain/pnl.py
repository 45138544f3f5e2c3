"""Realised PnL of a leg from the venue's own fills and funding income. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class FillLike:
    side: str  # "buy" | "sell"
    qty: Decimal
    price: Decimal
    fee: Decimal  # paid, >= 0


@dataclass(frozen=True)
class LegPnl:
    bought_qty: Decimal
    sold_qty: Decimal
    price_pnl: Decimal  # Σ sell qty·price − Σ buy qty·price (valid when flat)
    fees: Decimal
    funding: Decimal
    net_qty: Decimal

    @property
    def total(self) -> Decimal:
        return self.price_pnl - self.fees + self.funding


def leg_pnl(fills: Iterable[FillLike], funding_amounts: Iterable[Decimal]) -> LegPnl:
    bought = sold = cash = fees = ZERO
    for f in fills:
        notional = f.qty * f.price
        if f.side == "buy":
            bought += f.qty
            cash -= notional
        elif f.side == "sell":
            sold += f.qty
            cash += notional
        else:
            raise ValueError(f"side must be buy or sell, got {f.side!r}")
        fees += f.fee
    funding = sum(funding_amounts, ZERO)
    return LegPnl(bought, sold, cash, fees, funding, bought - sold)
