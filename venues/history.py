"""Reading account history (our trades, funding income) over any span, however long the hold.

Venues cap one history query: Binance USD-M ``userTrades`` accepts at most 7 days between
``startTime`` and ``endTime`` and ccxt, given only ``since`` more than a week ago, sends
``endTime = since + 7 days``, so one query silently misses everything later; ``income``
returns at most 1000 rows. :func:`collect` therefore walks ``[since, until]`` in windows of
:data:`WINDOW_MS`, pages inside a window while a page comes back full, and de-duplicates.
Binance and Hyperliquid answer the *oldest* rows of a range first (a full page: read on from its
newest row); Bybit and OKX the *newest* (``newest_first``: read on below its oldest row).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any

#: One query spans at most this (Binance: endTime − startTime ≤ 7 days).
WINDOW_MS = 7 * 24 * 3600 * 1000 - 1
#: Rows asked for per query by default (Binance's maximum for userTrades and income); the
#: venue's adapter gives its own (``page_size``: Bybit, OKX, Bitget allow 100).
PAGE_LIMIT = 1000
#: History older than this is not kept by the venues (Binance: 6 months); ``since`` is clamped.
MAX_LOOKBACK_MS = 183 * 24 * 3600 * 1000
#: ``until`` defaults to now plus this (the venue's clock may run ahead of ours).
CLOCK_SLACK_MS = 60_000
#: Pages per window at most (a guard against a venue that ignores ``startTime``).
MAX_PAGES = 100

Row = Mapping[str, Any]


def windows(since_ms: int, until_ms: int, width_ms: int = WINDOW_MS) -> list[tuple[int, int]]:
    """``[since, until]`` cut into consecutive inclusive windows of at most ``width_ms``."""
    out: list[tuple[int, int]] = []
    start = since_ms
    while True:
        end = min(start + width_ms, until_ms)
        out.append((start, max(end, start)))
        if end >= until_ms:
            return out
        start = end + 1


def clamp_since(since_ms: int, now_ms: int) -> int:
    return max(int(since_ms), now_ms - MAX_LOOKBACK_MS)


async def collect(
    fetch: Callable[[int, int], Awaitable[list[Row]]],
    since_ms: int,
    until_ms: int,
    key: Callable[[Row], Hashable],
    *,
    width_ms: int = WINDOW_MS,
    page_limit: int = PAGE_LIMIT,
    newest_first: bool = False,
) -> list[Row]:
    """Every row ``fetch(start, end)`` yields for ``[since_ms, until_ms]``, each once (by ``key``);
    ``newest_first``: a full page holds the newest rows of the range (module doc)."""
    seen: dict[Hashable, Row] = {}
    for start, end in windows(since_ms, until_ms, width_ms):
        lo, hi = start, end
        for _ in range(MAX_PAGES):
            rows = await fetch(lo, hi)
            new = 0
            for r in rows:
                k = key(r)
                if k not in seen:
                    seen[k] = r
                    new += 1
            if len(rows) < page_limit:
                break
            stamps = [int(r.get("timestamp") or 0) for r in rows]
            # a full page: go on from its oldest (newest_first) or newest timestamp, inclusive
            # (rows sharing it are de-duplicated); a page of nothing new means that millisecond
            # is exhausted
            if newest_first:
                first = min(stamps)
                hi = first if new and first < hi else min(first, hi) - 1
            else:
                last = max(stamps)
                lo = last if new and last > lo else max(last, lo) + 1
            if lo > hi:
                break
    return sorted(seen.values(), key=lambda r: int(r.get("timestamp") or 0))


def trade_key(t: Row) -> Hashable:
    return ("id", str(t["id"])) if t.get("id") is not None else (t.get("order"), t.get("timestamp"), t.get("amount"))


def income_id(r: Row) -> str | None:
    """The venue's id of a funding-history row; None where it has none or a placeholder
    (Hyperliquid's funding rows all carry the zero hash)."""
    rid = r.get("id") or (r.get("info") or {}).get("tranId")
    if rid is None or not str(rid).removeprefix("0x").strip("0"):
        return None
    return str(rid)


def income_key(r: Row) -> Hashable:
    rid = income_id(r)
    if rid:
        return ("id", str(rid), str(r.get("symbol")))
    return (r.get("symbol"), r.get("timestamp"), r.get("amount"))


Call = Callable[..., Awaitable[Any]]


async def trade_rows(
    call: Call,
    symbol: str,
    since_ms: int,
    until_ms: int | None,
    order_ids: Iterable[str] | None,
    *,
    now_ms: int,
    by_order_id: bool,
    page_limit: int = PAGE_LIMIT,
    newest_first: bool = False,
) -> list[Row]:
    """ccxt trades of ``symbol`` in ``[since, until]`` (of ``order_ids`` only, when given).

    ``by_order_id`` (Binance): one ``fetch_my_trades(params={'orderId': ...})`` per order,
    without a time range (so no 7-day cap); an order that shows no trade that way is looked
    for in the windows as well."""
    wanted = None if order_ids is None else sorted({str(i) for i in order_ids if str(i)})
    if wanted is not None and not wanted:
        return []
    found: dict[Hashable, Row] = {}
    missing = wanted
    if wanted is not None and by_order_id:
        for oid in wanted:
            for t in await call("fetch_my_trades", symbol, None, page_limit, {"orderId": oid}):
                if str(t.get("order")) == oid:
                    found[trade_key(t)] = t
        missing = [oid for oid in wanted if not any(str(t.get("order")) == oid for t in found.values())]
        if not missing:
            return sorted(found.values(), key=lambda r: int(r.get("timestamp") or 0))

    async def fetch(start: int, end: int) -> list[Row]:
        return await call("fetch_my_trades", symbol, start, page_limit, {"until": end})

    until = until_ms if until_ms is not None else now_ms + CLOCK_SLACK_MS
    for t in await collect(fetch, clamp_since(since_ms, now_ms), until, trade_key, page_limit=page_limit,
                           newest_first=newest_first):
        if missing is None or str(t.get("order")) in missing:
            found.setdefault(trade_key(t), t)
    return sorted(found.values(), key=lambda r: int(r.get("timestamp") or 0))


async def funding_rows(
    call: Call, symbol: str | None, since_ms: int, until_ms: int | None, *, now_ms: int,
    page_limit: int = PAGE_LIMIT, params: Callable[[int, int], Mapping[str, Any]] | None = None,
    newest_first: bool = False,
) -> list[Row]:
    """ccxt funding history (of ``symbol`` when given) in ``[since, until]`` (``params(start, end)``:
    the venue's extra query parameters of one query)."""

    async def fetch(start: int, end: int) -> list[Row]:
        extra = params(start, end) if params is not None else {}
        return await call("fetch_funding_history", symbol, start, page_limit, {**extra, "until": end})

    until = until_ms if until_ms is not None else now_ms + CLOCK_SLACK_MS
    return await collect(fetch, clamp_since(since_ms, now_ms), until, income_key, page_limit=page_limit,
                         newest_first=newest_first)
