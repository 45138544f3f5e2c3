"""venues/funding_map.py: one bulk funding read, each market's entry parsed when first asked for
(with 1,000 holding trades the shared read built all 1,008 entries about once a second per venue
for the one symbol each trade looks at: 15 % of the worker's CPU)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.simproc import in_process_sim
from tests.test_gateway import venue
from venues import funding_map, parse
from venues.funding_map import CcxtRates, FundingMap
from venues.gateway import Gateway

NOW = 1_796_000_000_000


def raw(n: int) -> dict[str, dict]:
    out = {f"S{i:03d}/USDT:USDT": {"fundingRate": f"0.000{i % 9 + 1}", "markPrice": str(100 + i),
                                   "indexPrice": str(99 + i), "fundingTimestamp": NOW + 3_600_000,
                                   "timestamp": NOW - 5, "interval": "8h" if i % 2 else None}
           for i in range(n)}
    out["S001/USDT:USDT"]["markPrice"] = None  # no mark: never listed
    return out


def eager(r: dict, symbols: list[str], intervals: dict) -> dict:
    """What the gateway built before: every entry of every active market, at once."""
    got = {s: parse.funding_info(s, r[s], known_interval=intervals.get(s), now_ms=NOW) for s in symbols if s in r}
    return {s: v for s, v in got.items() if v is not None}


def test_the_map_is_what_every_entry_parsed_gave_and_builds_only_what_is_asked(monkeypatch: pytest.MonkeyPatch):
    r = raw(50)
    active = [s for s in r if s != "S007/USDT:USDT"] + ["GONE/USDT:USDT"]  # one inactive, one not in the read
    intervals = {"S002/USDT:USDT": Decimal(4)}
    expected = eager(r, active, intervals)
    built: list[str] = []
    real = parse.funding_info

    def counting(symbol, fr, **kw):
        built.append(symbol)
        return real(symbol, fr, **kw)

    monkeypatch.setattr(funding_map.parse, "funding_info", counting)
    m = FundingMap(r, active, intervals, NOW)
    assert m["S010/USDT:USDT"].mark_price == Decimal(110) and m.get("S010/USDT:USDT") is m["S010/USDT:USDT"]
    assert "S007/USDT:USDT" not in m and "S001/USDT:USDT" not in m and "GONE/USDT:USDT" not in m
    assert m["S002/USDT:USDT"].interval_hours == Decimal(4)  # the known interval where the entry has none
    assert sorted(set(built)) == ["S001/USDT:USDT", "S002/USDT:USDT", "S010/USDT:USDT"]  # only what was asked
    assert dict(m.items()) == expected  # iterating builds all: the same map as before
    assert len(m) == 48 and built.count("S010/USDT:USDT") == 1  # each entry parsed once per read


async def test_the_binance_dialect_parses_a_row_when_asked_and_gives_what_ccxt_gives(tmp_path):
    """Against a simulator over HTTP: the gateway's funding map (premiumIndex rows, each parsed by
    ccxt's ``parse_funding_rate`` when asked for) is exactly what it built from ccxt's
    ``fetch_funding_rates`` before, and answering one symbol parses that row alone."""
    async with in_process_sim(tmp_path, name="fmap") as sim, Gateway(venue(sim.url)) as gw:
        await gw.markets()
        rates = await gw.funding_rates()
        raw = rates._raw  # the adapter's lazy rows
        assert isinstance(raw, CcxtRates) and len(raw) >= 3
        assert rates["BTC/USDT:USDT"].mark_price > 0 and len(raw._parsed) <= 2  # (one more: the interval probe)
        rows = list(raw._rows.values())  # the same rows through ccxt's whole-answer parse
        via_ccxt = gw.exchange.parse_funding_rates(rows)
        markets = {s for s, m in (await gw.markets()).items() if m.active}
        want = {s: parse.funding_info(s, fr, known_interval=gw._intervals.get(s), now_ms=rates._now)
                for s, fr in via_ccxt.items() if s in markets}
        assert dict(rates.items()) == {s: v for s, v in want.items() if v is not None}
