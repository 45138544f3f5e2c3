"""The funding rates and marks of one bulk read, each market's entry built when first asked for.

A venue's bulk read lists every market (1,008 on the bench's simulators). The gateway used to turn
every entry into a :class:`~venues.models.FundingInfo` on every read, and with 1,000 holding trades
the shared read (``venues/shared_reads.py``) runs about once a second per venue: building 1,008
entries there was 15 % of the worker's CPU, for the one or two symbols each caller looks at. Here
an entry is parsed (:func:`venues.parse.funding_info`, the same code, with the read's own time) the
first time it is asked for, once per read; iterating the map builds them all, as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from venues import parse
from venues.models import FundingInfo


class FundingMap(Mapping[str, FundingInfo]):
    """``symbol → FundingInfo`` of one read: the markets in ``symbols`` (the venue's active ones)
    whose raw entry has a rate, a mark and a next funding time."""

    def __init__(self, raw: Mapping[str, Mapping[str, Any]], symbols: Iterator[str] | list[str],
                 intervals: Mapping[str, Decimal], now_ms: int) -> None:
        self._raw, self._intervals, self._now = raw, dict(intervals), now_ms
        self._symbols = [s for s in symbols if s in raw]
        self._listed = set(self._symbols)
        self._built: dict[str, FundingInfo | None] = {}

    def _build(self, symbol: str) -> FundingInfo | None:
        if symbol not in self._built:
            self._built[symbol] = parse.funding_info(
                symbol, self._raw[symbol], known_interval=self._intervals.get(symbol), now_ms=self._now)
        return self._built[symbol]

    def __getitem__(self, symbol: str) -> FundingInfo:
        info = self._build(symbol) if symbol in self._listed else None
        if info is None:
            raise KeyError(symbol)
        return info

    def __iter__(self) -> Iterator[str]:
        return (s for s in self._symbols if self._build(s) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"FundingMap({len(self._symbols)} markets, {len(self._built)} built)"


class CcxtRates(Mapping[str, Mapping[str, Any]]):
    """A raw bulk funding answer (Binance's ``premiumIndex`` rows), each row parsed by ccxt's own
    ``parse_funding_rate`` when first asked for: ccxt's ``fetch_funding_rates`` parses all of them
    (about 50 µs each: 50 ms a read at 1,008 markets, 20 % of the worker's CPU with 1,000 trades
    holding). Keys are ccxt symbols, as ``fetch_funding_rates`` gives them."""

    def __init__(self, exchange: Any, rows: Any) -> None:
        self._exchange = exchange
        self._rows: dict[str, Any] = {}
        for r in rows if isinstance(rows, list) else []:
            symbol = exchange.safe_symbol(str(r.get("symbol")), None, None, "contract")
            if symbol is not None:
                self._rows[symbol] = r
        self._parsed: dict[str, Mapping[str, Any]] = {}

    def __getitem__(self, symbol: str) -> Mapping[str, Any]:
        got = self._parsed.get(symbol)
        if got is None:
            got = self._parsed[symbol] = self._exchange.parse_funding_rate(self._rows[symbol])
        return got

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
