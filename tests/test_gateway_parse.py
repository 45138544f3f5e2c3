"""Pure parsers (venues/parse.py) and the error table (venues/errors.py), on small hand-written
dicts shaped like ccxt 4.x ``binanceusdm`` answers (taken from ccxt against the simulator)."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from venues import parse
from venues.errors import (
    NON_RETRYABLE_TYPE_NAMES,
    BadSymbol,
    ClockSkew,
    InsufficientMargin,
    InvalidOrder,
    OrderOutcomeUnknown,
    RateLimited,
    VenueNetworkError,
    VenueRejected,
    VenueTimeout,
    VenueUnavailable,
    is_leverage_unchanged,
    is_market_metadata_error,
    map_error,
)
from venues.models import MarketInfo, OrderStatus, Side

SYMBOL = "BTC/USDT:USDT"
NOW = 1_796_129_000_000

RAW_MARKET = {
    "id": "BTCUSDT", "symbol": SYMBOL, "type": "swap", "swap": True, "linear": True, "active": True,
    "contractSize": 1.0, "precision": {"amount": 0.001, "price": 0.1},
    "limits": {"amount": {"min": 0.001, "max": 1000.0}, "cost": {"min": 5.0, "max": None}},
}
BTC = MarketInfo(symbol=SYMBOL, venue_symbol="BTCUSDT", contract_size=Decimal(1), qty_step=Decimal("0.001"),
                 min_qty=Decimal("0.001"), min_notional=Decimal(5), price_tick=Decimal("0.1"))


def test_decimal_goes_through_str_and_rejects_junk() -> None:
    assert parse.D(0.1) == Decimal("0.1")
    assert parse.D("63491.9000") == Decimal("63491.9000")
    assert [parse.D(v) for v in (None, "", "abc", float("nan"), float("inf"))] == [None] * 5
    assert parse.d0(None) == 0


@pytest.mark.parametrize("text, hours", [("8h", 8), ("4", 4), (1, 1), ("30m", "0.5"), ("1d", 24)])
def test_interval_hours(text: object, hours: object) -> None:
    got = parse.interval_hours(text)
    assert got is not None and got.quantize(Decimal("0.000001")) == Decimal(str(hours))  # minutes: 1/60 rounding


def test_interval_hours_unusable() -> None:
    assert [parse.interval_hours(v) for v in (None, "0h", "-1", "soon")] == [None] * 4


def test_market_info_tick_size_and_contract_size() -> None:
    assert parse.markets({SYMBOL: RAW_MARKET}, ccxt.TICK_SIZE) == {SYMBOL: BTC}
    m = parse.market_info({**RAW_MARKET, "contractSize": 10, "precision": {"amount": 2, "price": 1},
                           "limits": {}}, ccxt.DECIMAL_PLACES)
    assert m is not None
    assert (m.qty_step, m.min_qty, m.min_notional, m.price_tick) == (
        Decimal("0.10"), Decimal("0.10"), 0, Decimal("0.1"))


@pytest.mark.parametrize("over", [{"linear": False}, {"swap": False},
                                  {"precision": {"amount": None, "price": 0.1}}])
def test_market_info_skips_non_perpetuals_and_incomplete(over: dict) -> None:
    assert parse.market_info({**RAW_MARKET, **over}, ccxt.TICK_SIZE) is None


def test_market_info_keeps_inactive_markets_with_their_status() -> None:
    m = parse.market_info({**RAW_MARKET, "active": False, "info": {"status": "SETTLING"}}, ccxt.TICK_SIZE)
    assert m is not None and m.active is False and m.status == "SETTLING"
    assert m.model_copy(update={"active": True, "status": None}) == BTC
    assert parse.market_info({**RAW_MARKET, "info": {"status": "TRADING"}}, ccxt.TICK_SIZE).active is True


def test_funding_info_interval_fallbacks() -> None:
    fr = {"symbol": SYMBOL, "markPrice": 63485.4, "indexPrice": 63489.5, "timestamp": 1796129119832,
          "fundingRate": 0.00016154, "fundingTimestamp": 1796140800000, "interval": None}
    fi = parse.funding_info(SYMBOL, fr, known_interval=None, now_ms=NOW)
    assert fi is not None
    assert (fi.rate, fi.interval_hours, fi.next_funding_ms) == (Decimal("0.00016154"), 8, 1796140800000)
    assert (fi.mark_price, fi.index_price, fi.timestamp_ms) == (Decimal("63485.4"), Decimal("63489.5"), 1796129119832)
    assert parse.funding_info(SYMBOL, fr, known_interval=Decimal(4), now_ms=NOW).interval_hours == 4
    own = parse.funding_info(SYMBOL, {**fr, "interval": "1h", "timestamp": None}, known_interval=Decimal(4),
                             now_ms=NOW)
    assert (own.interval_hours, own.timestamp_ms) == (1, NOW)
    assert parse.funding_info(SYMBOL, {**fr, "fundingRate": None}, known_interval=None, now_ms=NOW) is None
    assert parse.funding_intervals({SYMBOL: {"interval": "8h"}, "X/USDT:USDT": {"interval": None}}) == {SYMBOL: 8}


def test_order_book_in_base_units_and_depth() -> None:
    raw = {"bids": [[63479.1, 0.787], [63472.8, 1]], "asks": [[63491.9, 0.5]], "timestamp": None}
    book = parse.order_book(raw, SYMBOL, Decimal(10), 1, now_ms=NOW)
    assert [(b.price, b.qty) for b in book.bids] == [(Decimal("63479.1"), Decimal("7.870"))]
    assert (book.asks[0].qty, book.timestamp_ms) == (Decimal("5.0"), NOW)


def test_balance_derives_missing_field() -> None:
    b = parse.balance({"USDT": {"free": 100000.0, "used": 0.0, "total": 100000.0}})
    assert (b.total, b.free, b.used) == (Decimal("100000.0"), Decimal("100000.0"), Decimal("0.0"))
    b = parse.balance({"USDT": {"free": 60, "used": 40, "total": None}})
    assert b.total == 100
    assert parse.balance({}).total == 0


RAW_POSITION = {
    "info": {"symbol": "BTCUSDT", "positionAmt": "-0.020", "entryPrice": "63504.1", "leverage": "20"},
    "symbol": SYMBOL, "contracts": 0.02, "side": "short", "entryPrice": 63504.1, "markPrice": 63511.1,
    "unrealizedPnl": -0.14, "leverage": 20.0, "liquidationPrice": None,
}


def test_positions_signed_and_filtered() -> None:
    markets = {SYMBOL: BTC}
    (p,) = parse.positions([RAW_POSITION], markets, binance_dialect=True)
    assert (p.qty, p.entry_price, p.unrealized_pnl, p.leverage) == (
        Decimal("-0.020"), Decimal("63504.1"), Decimal("-0.14"), Decimal("20.0"))
    (q,) = parse.positions([{**RAW_POSITION, "info": {}}], markets, binance_dialect=False)
    assert q.qty == Decimal("-0.02")
    flat = {**RAW_POSITION, "info": {"positionAmt": "0"}}
    assert parse.positions([flat], markets, binance_dialect=True) == []
    assert parse.positions([RAW_POSITION], markets, ["ETH/USDT:USDT"], binance_dialect=True) == []
    inactive = {SYMBOL: BTC.model_copy(update={"active": False, "status": "SETTLING"})}
    assert parse.positions([RAW_POSITION], inactive, binance_dialect=True) == [p]


def test_positions_in_unknown_markets_are_never_dropped() -> None:
    other = {**RAW_POSITION, "symbol": "ETHUSDT", "contractSize": None}
    assert parse.unknown_position_symbols([other, RAW_POSITION], {SYMBOL: BTC}, binance_dialect=True) == {"ETHUSDT"}
    flat = {**other, "info": {"positionAmt": "0"}, "contracts": 0}
    assert parse.unknown_position_symbols([flat], {SYMBOL: BTC}, binance_dialect=True) == set()
    (p,) = parse.positions([other], {SYMBOL: BTC}, binance_dialect=True)
    assert (p.symbol, p.qty, p.market_known) == ("ETHUSDT", Decimal("-0.020"), False)
    # not Binance and no contract size: a typed error, never a silent "flat"
    with pytest.raises(BadSymbol):
        parse.positions([{**other, "info": {}}], {SYMBOL: BTC}, binance_dialect=False)
    (q,) = parse.positions([{**other, "info": {}, "contractSize": 10}], {}, binance_dialect=False)
    assert q.qty == Decimal("-0.20") and not q.market_known
    assert parse.one_way_mode({"info": {"dualSidePosition": False}, "hedged": False})


RAW_ORDER = {
    "info": {"orderId": 8389765000000000001, "status": "FILLED", "clientOrderId": "hfLox5Cw",
             "avgPrice": "63491.9000", "origQty": "0.01", "executedQty": "0.01", "reduceOnly": False,
             "updateTime": 1796129119850},
    "id": "8389765000000000001", "clientOrderId": "hfLox5Cw", "timestamp": 1796129119850,
    "lastUpdateTimestamp": 1796129119850, "symbol": SYMBOL, "type": "market", "reduceOnly": False,
    "side": "buy", "amount": 0.01, "average": 63491.9, "filled": 0.01, "status": "closed", "fee": None,
}


def _order(o: dict, **kw: object):
    return parse.order_result(o, BTC, venue="v", binance_dialect=True, taker_fee=Decimal("0.0005"),
                              now_ms=NOW, **kw)


def test_order_result_filled_with_estimated_fee() -> None:
    r = _order(RAW_ORDER)
    assert (r.venue, r.client_order_id, r.venue_order_id, r.side) == ("v", "hfLox5Cw", "8389765000000000001", Side.BUY)
    assert (r.status, r.filled_qty, r.requested_qty, r.avg_price) == (
        OrderStatus.FILLED, Decimal("0.01"), Decimal("0.01"), Decimal("63491.9000"))
    assert r.fee == Decimal("0.01") * Decimal("63491.9000") * Decimal("0.0005")
    assert (r.reduce_only, r.timestamp_ms, r.is_closed) == (False, 1796129119850, True)


def test_order_result_knows_an_order_filled_late() -> None:
    """The venue accepted it at ``timestamp`` and last updated (filled) it 2.5 s later: a venue
    that matches late (lifecycle-v7 lets its leg close first)."""
    late = RAW_ORDER | {"lastUpdateTimestamp": RAW_ORDER["timestamp"] + 2500}
    r = _order(late)
    assert (r.created_ms, r.timestamp_ms) == (RAW_ORDER["timestamp"], RAW_ORDER["timestamp"] + 2500)
    assert r.executed_late(1000) and not r.executed_late(3000)
    assert not _order(RAW_ORDER).executed_late(1)  # filled as it arrived


def test_order_result_ack_answer_uses_caller_values() -> None:
    ack = {"info": {"status": "NEW", "avgPrice": "0.00", "executedQty": "0"}, "id": "7", "side": None,
           "clientOrderId": None, "status": "open", "reduceOnly": None, "fee": {"cost": None}}
    r = _order(ack, requested=Decimal("0.5"), side=Side.SELL, reduce_only=True, client_order_id="cid1")
    assert (r.status, r.side, r.reduce_only, r.client_order_id) == (OrderStatus.NEW, Side.SELL, True, "cid1")
    assert (r.requested_qty, r.filled_qty, r.avg_price, r.fee, r.timestamp_ms) == (
        Decimal("0.5"), 0, None, 0, NOW)


@pytest.mark.parametrize("raw, unified, filled, status", [
    ("EXPIRED_IN_MATCH", None, 0, OrderStatus.EXPIRED), ("CANCELLED", "open", 0, OrderStatus.CANCELED),
    ("", "open", 1, OrderStatus.PARTIALLY_FILLED), ("", "open", 0, OrderStatus.NEW),
    ("", "closed", 0, OrderStatus.FILLED), ("", "rejected", 0, OrderStatus.REJECTED), ("?", None, 0, OrderStatus.NEW),
])
def test_order_status(raw: str, unified: str | None, filled: int, status: OrderStatus) -> None:
    assert parse.order_status({"status": unified}, {"status": raw}, Decimal(filled)) == status


def test_fills_sorted_base_units() -> None:
    t = {"info": {"commission": "0.3174595", "realizedPnl": "1.5"}, "timestamp": 2, "symbol": SYMBOL,
         "id": "5000000001", "order": "8389765000000000001", "side": "buy", "price": 63491.9, "amount": 0.01,
         "fee": {"currency": "USDT", "cost": 0.3174595}}
    m10 = BTC.model_copy(update={"contract_size": Decimal(10)})
    f1, f2 = parse.fills([t, {**t, "id": "9", "timestamp": 1, "fee": None}], m10)
    assert (f1.trade_id, f1.fee, f2.fee) == ("9", 0, Decimal("0.3174595"))
    assert (f2.qty, f2.price, f2.realized_pnl, f2.venue_order_id) == (
        Decimal("0.10"), Decimal("63491.9"), Decimal("1.5"), "8389765000000000001")


def test_funding_payments_filtered_sorted() -> None:
    r = {"info": {"income": "-0.0123", "tranId": 77}, "symbol": SYMBOL, "timestamp": 5, "id": None, "amount": -0.01}
    other = {**r, "symbol": "ETH/USDT:USDT", "timestamp": 1}
    (p,) = parse.funding_payments([r, other], SYMBOL, binance_dialect=True)
    assert (p.amount, p.income_id, p.timestamp_ms) == (Decimal("-0.0123"), "77", 5)
    both = parse.funding_payments([r, other], binance_dialect=False)
    assert [x.symbol for x in both] == ["ETH/USDT:USDT", SYMBOL] and both[1].amount == Decimal("-0.01")


@pytest.mark.parametrize("exc, cls", [
    (ccxt.ExchangeError('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'), InsufficientMargin),
    (ccxt.InvalidOrder('binanceusdm {"code":-1021,"msg":"Timestamp outside recvWindow"}'), ClockSkew),
    (ccxt.ExchangeError('{"code":-1007,"msg":"Timeout waiting for response"}'), VenueTimeout),
    (ccxt.RequestTimeout("timed out"), VenueTimeout), (ccxt.OnMaintenance("503"), VenueUnavailable),
    (ccxt.RateLimitExceeded("429"), RateLimited), (ccxt.BadResponse("junk"), VenueUnavailable),
    (ccxt.OrderNotFillable("no"), InvalidOrder), (ccxt.BadRequest("no"), VenueRejected),
    (ConnectionResetError("reset"), VenueNetworkError), (TimeoutError(), VenueTimeout),
])
def test_map_error_table(exc: BaseException, cls: type) -> None:
    err = map_error(exc, "v", secrets=["s3cr3t"])
    assert type(err) is cls and err.venue == "v"
    assert (type(err).__name__ in NON_RETRYABLE_TYPE_NAMES) is not err.retryable


def test_filter_and_status_refusals_are_market_metadata_errors() -> None:
    for code in (-1111, -1013, -4003, -4023, -4164, -4140):
        err = map_error(ccxt.ExchangeError(f'binanceusdm {{"code":{code},"msg":"x"}}'), "v")
        assert isinstance(err, InvalidOrder) and err.code == code and is_market_metadata_error(err)
    assert not is_market_metadata_error(map_error(ccxt.ExchangeError('{"code":-2019,"msg":"x"}'), "v"))
    assert not is_market_metadata_error(RateLimited("x"))
    unknown = OrderOutcomeUnknown("x")
    assert unknown.retryable and unknown.outcome_unknown and "OrderOutcomeUnknown" not in NON_RETRYABLE_TYPE_NAMES


def test_map_error_scrubs_secrets_and_leverage_unchanged() -> None:
    err = map_error(ccxt.ExchangeError("bad key s3cr3tKEY no need to change"), "v", secrets=["s3cr3tKEY", "ab"])
    assert "s3cr3tKEY" not in str(err) and "***" in str(err)
    assert is_leverage_unchanged(err)
    assert not is_leverage_unchanged(RateLimited("already set"))
