"""The per-venue adapters (venues.adapters): pure unit tests of every hook, the registry, the ccxt
set-up they drive (no network), the capability table, and one gateway round trip through a
fake ccxt instance for a venue whose client ids and market orders differ (Hyperliquid)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import VenueConfig
from domain.ids import client_order_id, hex_client_order_id, is_valid_hex_client_order_id
from venues import parse
from venues.adapters import adapter_for, adapter_for_exchange, all_adapters, capability_table
from venues.adapters.base import Adapter
from venues.adapters.binance import BinanceAdapter
from venues.adapters.bybit import BybitAdapter
from venues.adapters.generic import GateAdapter, GenericAdapter
from venues.adapters.hyperliquid import HyperliquidAdapter
from venues.adapters.okx import OkxAdapter
from venues.errors import OrderNotFound
from venues.exchange import make_exchange, point_at
from venues.gateway import Gateway
from venues.models import MarketInfo, OrderStatus
from venues.placing import RECV_WINDOW_MS

SIM_URL = "http://127.0.0.1:8799"
ALNUM = re.compile(r"\A[A-Za-z0-9]+\Z")


def sim(dialect: str = "binance") -> VenueConfig:
    return VenueConfig(name="sim-x", kind="sim", base_url=SIM_URL, dialect=dialect)


def live(exchange_id: str, **over: Any) -> VenueConfig:
    data: dict[str, Any] = {"name": "v", "kind": "ccxt", "exchange_id": exchange_id,
                            "api_key": SecretStr("k"), "api_secret": SecretStr("s"), **over}
    return VenueConfig(**data)


# --- registry ----------------------------------------------------------------------------
def test_registry_by_dialect_and_exchange_id() -> None:
    a = adapter_for(sim())
    assert isinstance(a, BinanceAdapter) and a.exchange_id == "binanceusdm"
    assert type(adapter_for(sim("bybit"))) is BybitAdapter and adapter_for(sim("bybit")).exchange_id == "bybit"
    assert type(adapter_for(sim("okx"))) is OkxAdapter
    assert type(adapter_for(sim("hyperliquid"))) is HyperliquidAdapter
    for eid, cls in [("binanceusdm", BinanceAdapter), ("binance", BinanceAdapter), ("bybit", BybitAdapter),
                     ("okx", OkxAdapter), ("hyperliquid", HyperliquidAdapter), ("gate", GateAdapter),
                     ("gateio", GateAdapter), ("bitget", GenericAdapter), ("woo", GenericAdapter)]:
        assert type(adapter_for_exchange(eid)) is cls, eid
    with pytest.raises(ValueError):
        VenueConfig(name="s", kind="sim", base_url=SIM_URL, dialect="kraken")


# --- client ids --------------------------------------------------------------------------
@pytest.mark.parametrize("adapter", all_adapters(), ids=lambda a: a.family)
def test_client_ids_deterministic_and_within_the_venue_rules(adapter: Adapter) -> None:
    ids = {adapter.client_order_id(f"trade-{i}", leg, step)
           for i in range(50) for leg in ("long", "short") for step in ("o", "t1", "c12345678"[:8])}
    assert len(ids) == 50 * 2 * 3  # distinct per (trade, leg, step)
    assert adapter.client_order_id("t", "long", "o") == adapter.client_order_id("t", "long", "o")
    for vcid in ids:
        assert len(vcid) <= adapter.cid_max_len
        assert adapter.is_valid_venue_client_id(vcid), vcid
        if not isinstance(adapter, HyperliquidAdapter):
            assert ALNUM.match(vcid)
    # the venue id is a function of hedgeflow's id, which the workflows derive
    cid = client_order_id("trade-1", "short", "c2")
    assert adapter.venue_client_id(cid) == adapter.client_order_id("trade-1", "short", "c2")


def test_client_id_forms() -> None:
    cid = client_order_id("trade-1", "long", "o")
    assert len(cid) == 32
    for a in (BinanceAdapter("binanceusdm"), BybitAdapter("bybit"), OkxAdapter("okx"), GenericAdapter("bitget")):
        assert a.venue_client_id(cid) == cid and not a.renames_client_id
    gate = GateAdapter("gate")
    assert gate.venue_client_id(cid) == cid[:28] and gate.renames_client_id
    hl = HyperliquidAdapter("hyperliquid")
    cloid = hl.venue_client_id(cid)
    assert re.fullmatch(r"0x[0-9a-f]{32}", cloid) and is_valid_hex_client_order_id(cloid)
    assert cloid == hex_client_order_id(cid) == hl.venue_client_id(cloid)  # idempotent
    assert hl.venue_client_id(client_order_id("trade-1", "long", "t1")) != cloid


# --- order and look-up params --------------------------------------------------------------
def test_order_and_lookup_params() -> None:
    cid = "hfLox123"
    assert BinanceAdapter("binanceusdm").order_params(cid, False) == {"newClientOrderId": cid}
    assert BinanceAdapter("binanceusdm").order_params(cid, True) == {"newClientOrderId": cid, "reduceOnly": True}
    assert BinanceAdapter("binanceusdm").lookup_params(cid) == {"origClientOrderId": cid}
    assert BybitAdapter("bybit").order_params(cid, True) == {"clientOrderId": cid, "reduceOnly": True}
    assert BybitAdapter("bybit").lookup_params(cid) == {"orderLinkId": cid}
    assert OkxAdapter("okx").order_params(cid, True) == {"clOrdId": cid, "reduceOnly": True, "tdMode": "cross"}
    assert OkxAdapter("okx").lookup_params(cid) == {"clOrdId": cid}
    assert HyperliquidAdapter("hyperliquid").lookup_params("0xab") == {"clientOrderId": "0xab"}
    assert GenericAdapter("bitget").order_params(cid, False) == {"clientOrderId": cid}


def test_market_order_semantics() -> None:
    for a in (BinanceAdapter("binanceusdm"), BybitAdapter("bybit"), OkxAdapter("okx"), GateAdapter("gate")):
        assert a.market_order("buy", Decimal("100")) == ("market", None, {}) and not a.market_needs_price
    hl = HyperliquidAdapter("hyperliquid")
    assert hl.market_needs_price
    assert hl.market_order("sell", Decimal("100")) == ("market", Decimal("100"), {"slippage": "0.05"})
    with pytest.raises(ValueError):
        hl.market_order("buy", None)


def test_page_sizes_units_and_windows() -> None:
    sizes = {a.family: a.page_size for a in all_adapters()}
    assert sizes == {"binance": 1000, "bybit": 100, "okx": 100, "hyperliquid": 500, "gate": 100, "generic": 100}
    assert GenericAdapter("bitget").page_size == 100
    assert BinanceAdapter("binanceusdm").validity_window_ms(10_000) == RECV_WINDOW_MS
    assert BybitAdapter("bybit").validity_window_ms(10_000) == RECV_WINDOW_MS
    assert OkxAdapter("okx").validity_window_ms(10_000) == 30_000
    assert HyperliquidAdapter("hyperliquid").validity_window_ms(10_000) == 10_000  # the gateway's own
    assert GenericAdapter("bitget").validity_window_ms(2_000) == RECV_WINDOW_MS
    assert OkxAdapter("okx").contract_sized and not HyperliquidAdapter("hyperliquid").contract_sized
    assert BinanceAdapter("binanceusdm").binance_fields and BinanceAdapter("binanceusdm").fills_by_order_id
    assert not BybitAdapter("bybit").binance_fields and not OkxAdapter("okx").fills_by_order_id


# --- account checks with a fake call -------------------------------------------------------
class FakeCall:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def __call__(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        answer = self.answers[method]
        return answer(*args) if callable(answer) else answer


async def test_position_mode_verified_or_skipped() -> None:
    call = FakeCall({"fetch_position_mode": {"hedged": True}})
    assert await BinanceAdapter("binanceusdm").one_way_mode(call, {"fetchPositionMode": True}) is False
    assert await OkxAdapter("okx").one_way_mode(FakeCall({"fetch_position_mode": {"hedged": False}}),
                                                {"fetchPositionMode": True}) is True
    nothing = FakeCall({})
    for a in (GenericAdapter("bitget"), GateAdapter("gate"), GenericAdapter("paradex")):
        assert await a.one_way_mode(nothing, {"fetchPositionMode": False}) is True  # skipped, no request
    assert await HyperliquidAdapter("hyperliquid").one_way_mode(nothing, {}) is True
    assert nothing.calls == []
    bybit = BybitAdapter("bybit")
    assert await bybit.one_way_mode(FakeCall({"fetch_positions": [{"info": {"positionIdx": 0}}]}), {}) is True
    assert await bybit.one_way_mode(FakeCall({"fetch_positions": [{"info": {"positionIdx": "2"}}]}), {}) is False


async def test_margin_mode() -> None:
    call = FakeCall({"fetch_margin_mode": {"marginMode": "ISOLATED"}})
    assert await BinanceAdapter("binanceusdm").margin_mode(call, {"fetchMarginMode": True}, "X") == "isolated"
    assert await GateAdapter("gate").margin_mode(FakeCall({}), {"fetchMarginMode": False}, "X") == "unknown"
    assert await OkxAdapter("okx").margin_mode(FakeCall({}), {}, "X") == "cross"


async def test_lookup_by_client_id() -> None:
    order = {"id": "1", "clientOrderId": "abc"}
    call = FakeCall({"fetch_open_orders": [], "fetch_canceled_and_closed_orders": [{"clientOrderId": "x"}, order]})
    assert await BybitAdapter("bybit").fetch_by_client_id(call, "BTC/USDT:USDT", "abc") == order
    assert [c[0] for c in call.calls] == ["fetch_open_orders", "fetch_canceled_and_closed_orders"]
    assert call.calls[0][1] == ("BTC/USDT:USDT", None, None, {"orderLinkId": "abc"})
    with pytest.raises(OrderNotFound):
        await BybitAdapter("bybit").fetch_by_client_id(
            FakeCall({"fetch_open_orders": [], "fetch_canceled_and_closed_orders": []}), "S", "abc")
    with pytest.raises(OrderNotFound):  # Hyperliquid's unknownOid parses to an order without id
        await HyperliquidAdapter("hyperliquid").fetch_by_client_id(FakeCall({"fetch_order": {"id": None}}), "S", "0x")
    call = FakeCall({"fetch_order": order})
    assert await BinanceAdapter("binanceusdm").fetch_by_client_id(call, "S", "abc") == order
    assert call.calls == [("fetch_order", (None, "S", {"origClientOrderId": "abc"}))]


def test_funding_intervals_from_markets() -> None:
    markets = {"A": {"swap": True, "info": {"fundingInterval": 480}}, "B": {"swap": True, "info": {"fundingInterval": "30"}},
               "C": {"swap": False, "info": {"fundingInterval": 60}}, "D": {"swap": True, "info": {}}}
    assert BybitAdapter("bybit").market_intervals(markets) == {"A": Decimal(8), "B": Decimal("0.5")}
    assert HyperliquidAdapter("hyperliquid").market_intervals(markets) == {s: Decimal(1) for s in "ABD"}
    assert BinanceAdapter("binanceusdm").market_intervals(markets) == {}


# --- credentials, environments, ccxt set-up ------------------------------------------------
def test_credentials() -> None:
    okx = live("okx", api_password=SecretStr("pp"))
    assert OkxAdapter("okx").credentials(okx) == {"apiKey": "k", "secret": "s", "password": "pp"}
    hl = live("hyperliquid", api_key=None, wallet_address="0xabc", api_secret=SecretStr("0xkey"))
    assert HyperliquidAdapter("hyperliquid").credentials(hl) == {"walletAddress": "0xabc", "privateKey": "0xkey"}
    assert "0xkey" not in repr(hl) and "pp" not in repr(okx)  # secrets print masked


def test_config_checks_venue_specific_credentials() -> None:
    okx = live("okx")
    assert any("api_password" in p and "HEDGEFLOW_VENUE_V_API_PASSWORD" in p for p in okx.resolve_secrets({}))
    assert live("okx").resolve_secrets({"HEDGEFLOW_VENUE_V_API_PASSWORD": "p"}) == []
    hl = live("hyperliquid", api_key=None, api_secret=None)
    problems = hl.resolve_secrets({})
    assert any("wallet_address" in p for p in problems) and any("private key" in p for p in problems)
    hl = live("hyperliquid", api_key=None, api_secret=None)
    assert hl.resolve_secrets({"HEDGEFLOW_VENUE_V_WALLET_ADDRESS": "0xa", "HEDGEFLOW_VENUE_V_API_SECRET": "0xk"}) == []
    assert hl.wallet_address == "0xa"
    assert live("binanceusdm").environment == "live" and sim().dialect == "binance"


async def test_sim_dialects_point_every_url_at_the_simulator() -> None:
    for dialect, ccxt_id in (("bybit", "bybit"), ("okx", "okx"), ("hyperliquid", "hyperliquid")):
        creds = {"wallet_address": "0xabc"} if dialect == "hyperliquid" else {}
        ex = make_exchange(VenueConfig(name="s", kind="sim", base_url=SIM_URL, dialect=dialect, **creds))
        try:
            assert ex.id == ccxt_id
            urls: list[str] = []

            def walk(u: Any, out: list[str] = urls) -> None:
                if isinstance(u, dict):
                    for v in u.values():
                        walk(v)
                elif isinstance(u, str):
                    out.append(u)

            walk(ex.urls["api"])
            assert urls and all(u.startswith(SIM_URL) for u in urls), urls
        finally:
            await ex.close()
    assert point_at({"a": "https://api.{hostname}/v5", "b": {"c": "https://x.io/api/v4/"}}, SIM_URL + "/") == \
        {"a": SIM_URL + "/v5", "b": {"c": SIM_URL + "/api/v4"}}


async def test_binance_sim_exchange_unchanged() -> None:
    ex = make_exchange(sim())
    try:
        assert ex.id == "binanceusdm" and ex.urls["api"]["fapiPrivate"] == SIM_URL + "/fapi/v1"
        assert ex.options["recvWindow"] == RECV_WINDOW_MS and ex.apiKey == "hedgeflow-demo-key"
    finally:
        await ex.close()


async def test_environments() -> None:
    cases = [("bybit", "demo", lambda ex: "api-demo" in ex.urls["api"]["private"]),
             ("bybit", "testnet", lambda ex: "testnet" in ex.urls["api"]["private"]),
             ("okx", "demo", lambda ex: ex.headers.get("x-simulated-trading") == "1"),
             ("hyperliquid", "testnet", lambda ex: "testnet" in ex.urls["api"]["private"]),
             ("binanceusdm", "demo", lambda ex: "demo" in ex.urls["api"]["fapiPrivate"]),
             ("binanceusdm", "live", lambda ex: ex.urls["api"]["fapiPrivate"].startswith("https://fapi.binance.com"))]
    for eid, env, ok in cases:
        extra: dict[str, Any] = {"api_password": SecretStr("p")} if eid == "okx" else {}
        if eid == "hyperliquid":
            extra = {"wallet_address": "0xabc"}
        ex = make_exchange(live(eid, environment=env, **extra))
        try:
            assert ok(ex), (eid, env)
        finally:
            await ex.close()
    with pytest.raises(ValueError, match="not offered"):
        make_exchange(live("hyperliquid", environment="demo", wallet_address="0xabc"))


# --- capability table ----------------------------------------------------------------------
def test_capability_table() -> None:
    table = capability_table()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| Family | ccxt ids | Client id |") and lines[1].startswith("|---|")
    assert len(lines) == 2 + len(all_adapters())
    assert all(line.count("|") == lines[0].count("|") for line in lines)  # no stray pipes
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert set(rows) == {"binance", "bybit", "okx", "hyperliquid", "gate", "generic"}
    assert "newClientOrderId" in rows["binance"] and "| 1000 |" in rows["binance"]
    assert "orderLinkId" in rows["bybit"] and "| 100 |" in rows["bybit"]
    assert "0x + 32 hex" in rows["hyperliquid"] and "1 h" in rows["hyperliquid"]
    assert "skipped" in rows["gate"] and "password" in rows["okx"] and "`text`" in rows["gate"]
    assert "recvWindow 5000 ms" in rows["binance"] and "timestamp expiry 30000" in rows["okx"]
    assert capability_table([OkxAdapter("okx")]).count("\n") == 3


# --- parse: our client id where the venue has another form ---------------------------------
def test_order_result_reports_our_client_id() -> None:
    m = MarketInfo(symbol="S", venue_symbol="S", contract_size=Decimal(1), qty_step=Decimal("0.001"),
                   min_qty=Decimal("0.001"), min_notional=Decimal(0), price_tick=Decimal("0.1"))
    o = {"id": "7", "clientOrderId": "0xabc", "side": "buy", "status": "closed", "amount": 1, "filled": 1,
         "average": 100}
    kw: dict[str, Any] = {"venue": "v", "binance_dialect": False, "taker_fee": Decimal(0), "now_ms": 1}
    assert parse.order_result(o, m, client_order_id="hfLox", **kw).client_order_id == "0xabc"
    assert parse.order_result(o, m, client_order_id="hfLox", own_client_id=True, **kw).client_order_id == "hfLox"


# --- the gateway through a fake ccxt instance (Hyperliquid) ------------------------------------
class FakeHyperliquid:
    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.created: list[tuple[Any, ...]] = []

    async def load_markets(self, reload: bool = False) -> dict[str, Any]:
        return {"BTC/USDC:USDC": {"symbol": "BTC/USDC:USDC", "id": "0", "swap": True, "linear": True,
                                  "contractSize": 1, "precision": {"amount": 0.001, "price": 0.5},
                                  "limits": {"amount": {"min": 0.001}, "cost": {"min": 10}}, "active": True}}

    async def fetch_order_book(self, symbol: str, limit: int) -> dict[str, Any]:
        return {"bids": [[99_000, 5]], "asks": [[99_010, 5]], "timestamp": 1}

    async def create_order(self, symbol: str, type: str, side: str, amount: str, price: Any,
                           params: dict[str, Any]) -> dict[str, Any]:
        self.created.append((symbol, type, side, amount, price, dict(params)))
        cloid = params["clientOrderId"]
        self.orders[cloid] = {"id": "42", "clientOrderId": cloid, "side": side, "status": "closed",
                              "amount": float(amount), "filled": float(amount), "average": 99_010.0,
                              "fee": {"cost": 0.5}}
        return self.orders[cloid]

    async def fetch_order(self, id: Any, symbol: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.orders.get(params["clientOrderId"]) or {"id": None}


async def test_gateway_uses_the_adapter_for_hyperliquid() -> None:
    gw = Gateway(live("hyperliquid", api_key=None, wallet_address="0xabc", api_secret=SecretStr("0x" + "1" * 64)))
    fake = FakeHyperliquid()
    for name in ("load_markets", "fetch_order_book", "create_order", "fetch_order"):
        setattr(gw.exchange, name, getattr(fake, name))
    try:
        assert await gw.is_one_way_mode() is True
        cid = client_order_id("trade-1", "long", "o")
        assert await gw.get_order("BTC/USDT:USDT", cid) is None  # unknownOid → not found
        res = await gw.place_market_order("BTC/USDT:USDT", "buy", Decimal("0.0105"), cid)
        ((symbol, otype, side, amount, price, params),) = fake.created
        assert symbol == "BTC/USDC:USDC" and list(await gw.markets()) == ["BTC/USDT:USDT"]  # the alias
        assert (otype, side, amount, price) == ("market", "buy", "0.010", "99010")  # bounded by the best ask
        assert params == {"clientOrderId": hex_client_order_id(cid), "slippage": "0.05"}
        assert res.symbol == "BTC/USDT:USDT" and res.client_order_id == cid and res.status is OrderStatus.FILLED and res.filled_qty == Decimal("0.010")
        again = await gw.place_market_order("BTC/USDT:USDT", "buy", Decimal("0.0105"), cid, lookup_first=True,
                                            ref_price=Decimal("99000"))
        assert again.duplicate_prevented and again.client_order_id == cid and len(fake.created) == 1
        other = client_order_id("trade-1", "long", "t1")
        await gw.place_market_order("BTC/USDT:USDT", "buy", Decimal("0.01"), other, ref_price=Decimal("98000"))
        assert fake.created[-1][4] == "98000"  # the caller's mark
    finally:
        await gw.close()


def test_readme_capability_table_is_the_adapters_own() -> None:
    """The README's table is produced from the adapters: regenerate it with
    ``python -c "from venues.adapters import capability_table; print(capability_table())"``."""
    import re
    from pathlib import Path

    from venues.adapters import capability_table

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"<!-- capability-table -->\n(.*?)\n<!-- /capability-table -->", text, re.S)
    assert m, "README lost its capability table"
    assert m.group(1).strip() == capability_table().strip(), "README capability table is stale: regenerate it"


def test_hyperliquid_usdc_markets_answer_to_our_usdt_names() -> None:
    """One name per market above the gateway (issue 11): Hyperliquid's X/USDC:USDC is our X/USDT:USDT,
    both ways; every other family's names are its own, and ccxt's answers are never mutated."""
    hl, bn = HyperliquidAdapter("hyperliquid"), BinanceAdapter("binanceusdm")
    assert hl.venue_symbol("BTC/USDT:USDT") == "BTC/USDC:USDC" and hl.our_symbol("BTC/USDC:USDC") == "BTC/USDT:USDT"
    assert hl.to_venue(("BTC/USDT:USDT", "market", ["ETH/USDT:USDT"], None)) == (
        "BTC/USDC:USDC", "market", ["ETH/USDC:USDC"], None)
    markets = {"BTC/USDC:USDC": {"symbol": "BTC/USDC:USDC", "id": "0"}}
    assert hl.from_venue(markets) == {"BTC/USDT:USDT": {"symbol": "BTC/USDT:USDT", "id": "0"}}
    assert markets == {"BTC/USDC:USDC": {"symbol": "BTC/USDC:USDC", "id": "0"}}  # ccxt's own table untouched
    assert hl.from_venue([{"symbol": "BTC/USDC:USDC", "amount": 1}]) == [{"symbol": "BTC/USDT:USDT", "amount": 1}]
    balance = {"USDC": {"total": 5}, "info": {}}
    assert hl.from_venue(balance) == balance and hl.from_venue(7) == 7
    assert bn.venue_symbol("BTC/USDT:USDT") == "BTC/USDT:USDT" and bn.from_venue(markets) is markets
    assert hl.market_intervals({"BTC/USDC:USDC": {"swap": True}}) == {"BTC/USDT:USDT": Decimal(1)}
