"""One name per market above the gateway: the USDT-margined unified symbol (``BTC/USDT:USDT``).

A venue whose perpetuals settle in another currency names the same underlying with it
(Hyperliquid: ``BTC/USDC:USDC``); its adapter says so (:attr:`venues.adapters.base.Adapter.
settle_alias`) and the gateway translates every ccxt call with these two functions: symbols in
the arguments to the venue's names (:func:`to_venue`), symbols in the answer back to ours
(:func:`from_venue`: a structure's ``symbol``, the keys of a by-symbol table). Where the venue
has no alias both are the identity, and ccxt's answers are passed on untouched (never mutated:
ccxt keeps ``load_markets``' table as its own).

Pairs are thus formed by underlying: a USDT-margined leg pairs with a USDC-margined one.
Notionals are in USD and the rate of either stablecoin is fixed at 1 (Hyperliquid's USDC prices,
fees and PnL are used unconverted); the basis between the two stablecoins is a risk the trade
carries (README, "One name per market").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the settlement currency of our names
OURS = "USDT"


def suffix(currency: str) -> str:
    """The unified-symbol tail of a linear perpetual settled in ``currency`` (``/USDT:USDT``)."""
    return f"/{currency}:{currency}"


def to_venue_symbol(symbol: str, alias: str | None) -> str:
    """Our ``X/USDT:USDT`` → the venue's ``X/<alias>:<alias>`` (other strings unchanged)."""
    if alias is None or not symbol.endswith(suffix(OURS)):
        return symbol
    return symbol[: -len(suffix(OURS))] + suffix(alias)


def to_our_symbol(symbol: str, alias: str | None) -> str:
    """The venue's ``X/<alias>:<alias>`` → our ``X/USDT:USDT`` (other strings unchanged)."""
    if alias is None or not symbol.endswith(suffix(alias)):
        return symbol
    return symbol[: -len(suffix(alias))] + suffix(OURS)


def to_venue(args: tuple[Any, ...], alias: str | None) -> tuple[Any, ...]:
    """ccxt call arguments with our symbols (alone or in a list) renamed for the venue."""
    if alias is None:
        return args
    return tuple(
        to_venue_symbol(a, alias) if isinstance(a, str)
        else [to_venue_symbol(s, alias) if isinstance(s, str) else s for s in a] if isinstance(a, list)
        else a
        for a in args
    )


def _one(row: Any, alias: str) -> Any:
    """A ccxt structure (order, trade, position, market, funding rate ...) with our symbol."""
    if isinstance(row, Mapping) and isinstance(row.get("symbol"), str):
        ours = to_our_symbol(row["symbol"], alias)
        if ours != row["symbol"]:
            return {**row, "symbol": ours}
    return row


def from_venue(result: Any, alias: str | None) -> Any:
    """A ccxt answer with the venue's symbols renamed to ours: a structure, a list of them, or a
    table by symbol (``load_markets``, ``fetch_funding_rates``); anything else as it is."""
    if alias is None:
        return result
    if isinstance(result, list):
        return [_one(r, alias) for r in result]
    if isinstance(result, Mapping):
        if "symbol" in result:
            return _one(result, alias)
        return {to_our_symbol(k, alias) if isinstance(k, str) else k: _one(v, alias) for k, v in result.items()}
    return result
