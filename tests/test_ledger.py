"""Ledger repository on SQLite and on PostgreSQL (skipped, with the reason, when none is
reachable): migrations, idempotent upserts, exact Decimals, incidents, PnL arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ops_helpers import fresh_pg_database, pg_admin_url

from ledger import Ledger

PG_URL, PG_REASON = pg_admin_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        led = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite")
        yield led
        led.close()
        return
    if PG_URL is None:
        pytest.skip(PG_REASON)
    with fresh_pg_database(PG_URL) as url:
        led = Ledger(url)
        yield led
        led.close()


def bundle(state: str = "closed"):
    tid = "trade-X-sim-a-sim-b-1"
    trade = dict(trade_id=tid, symbol="X/USDT:USDT", long_venue="sim-a", short_venue="sim-b",
                 notional_usd=Decimal("1000"), target_qty=Decimal("10"), state=state, emergency=False,
                 fees_usd=Decimal("0.100000000000000001"), funding_usd=Decimal("1.5"),
                 realized_pnl_usd=Decimal("1.3"), open_ms=1_700_000_000_000)
    orders = [
        dict(venue=v, client_order_id=f"hf{leg}ox1", venue_order_id=f"{i}", trade_id=tid, leg=leg,
             symbol="X/USDT:USDT", side=side, reduce_only=False, status="filled", requested_qty=Decimal("10"),
             filled_qty=Decimal("10"), avg_price=Decimal("100.05"), fee=Decimal("0.05"), timestamp_ms=1_700_000_000_000 + i)
        for i, (v, leg, side) in enumerate((("sim-a", "L", "buy"), ("sim-b", "S", "sell")))
    ]
    fills = [
        dict(venue="sim-a", venue_trade_id="1", venue_order_id="0", trade_id=tid, symbol="X/USDT:USDT", side="buy",
             qty=Decimal("10"), price=Decimal("100"), fee=Decimal("0.05"), realized_pnl=Decimal(0), timestamp_ms=1),
        dict(venue="sim-a", venue_trade_id="2", venue_order_id="9", trade_id=tid, symbol="X/USDT:USDT", side="sell",
             qty=Decimal("10"), price=Decimal("100.01"), fee=Decimal("0.05"), realized_pnl=Decimal("0.1"),
             timestamp_ms=2),
    ]
    funding = [dict(venue="sim-a", income_id="f1", trade_id=tid, symbol="X/USDT:USDT", amount=Decimal("0.5"),
                    timestamp_ms=3)]
    return trade, orders, fills, funding


def test_upserts_are_idempotent_under_retries(ledger: Ledger):
    trade, orders, fills, funding = bundle("holding")
    assert ledger.record_trade_bundle(trade, orders, fills, funding) is None
    first = ledger.counts()
    for _ in range(3):  # a retried activity writes the same facts again
        assert ledger.record_trade_bundle(trade, orders, fills, funding) == "holding"
    assert ledger.counts() == first == {"trades": 1, "orders": 2, "fills": 2, "funding_payments": 1,
                                        "incidents": 0, "scanner_decisions": 0}
    # a later write updates the trade and the order in place
    trade2, orders2, _, _ = bundle("closed")
    orders2[0]["venue_order_id"] = "77"
    assert ledger.record_trade_bundle(trade2, orders2, fills, funding) == "holding"
    assert ledger.counts() == first
    t = ledger.trade(trade["trade_id"])
    assert t.state == "closed"
    assert t.fees_usd == Decimal("0.100000000000000001")  # exact, not a float
    by_cid = {o.client_order_id: o for o in ledger.orders(trade["trade_id"])}
    assert by_cid["hfLox1"].venue_order_id == "77" and by_cid["hfLox1"].avg_price == Decimal("100.05")
    # PnL from the ledger's own facts: 10 × (100.01 − 100) − 0.10 fees + 0.5 funding
    pnl = ledger.pnl(trade["trade_id"])
    assert (pnl.price_pnl, pnl.fees, pnl.funding, pnl.total) == (
        Decimal("0.1000"), Decimal("0.10"), Decimal("0.5"), Decimal("0.5000"))
    assert ledger.trades_by_state() == {"closed": 1}


def test_a_late_running_write_never_reopens_a_finished_trade(ledger: Ledger):
    """The `opened` record runs beside the hold; if it lands after the `closed` one (it was
    retried, or its run continued-as-new), the trade stays closed and its facts still merge."""
    closed, orders, fills, funding = bundle("closed")
    assert ledger.record_trade_bundle(closed, orders, fills, funding) is None
    late, late_orders, _, _ = bundle("holding")
    late_orders.append({**late_orders[0], "client_order_id": "hfLcx2", "venue_order_id": "55"})
    assert ledger.record_trade_bundle(late, late_orders, fills, funding) == "closed"
    assert ledger.trade(closed["trade_id"]).state == "closed"
    assert {o.client_order_id for o in ledger.orders(closed["trade_id"])} == {"hfLox1", "hfSox1", "hfLcx2"}
    assert ledger.trades_by_state() == {"closed": 1}


def test_incidents_open_once_and_resolve(ledger: Ledger):
    assert ledger.open_incident_count() == 0
    a, new_a = ledger.record_incident("orphan:sim-a:X", "orphan", "holds 1", venue="sim-a", symbol="X",
                                      qty=Decimal("1"))
    b, new_b = ledger.record_incident("orphan:sim-a:X", "orphan", "holds 2", venue="sim-a", symbol="X",
                                      qty=Decimal("2"))
    assert (a, new_a, new_b) == (b, True, False)
    assert ledger.open_incident_count() == 1
    assert ledger.open_incidents()[0].qty == Decimal("2")
    assert ledger.resolve_incident("orphan:sim-a:X", "flattened") is True
    assert ledger.resolve_incident("orphan:sim-a:X", "again") is False
    assert ledger.open_incident_count() == 0
    c, new_c = ledger.record_incident("orphan:sim-a:X", "orphan", "back", venue="sim-a", symbol="X")
    assert new_c and c != a  # the same key may open again after it was resolved


def test_scanner_decisions_are_written_once(ledger: Ledger):
    row = dict(decision_key="cycle-1:X:sim-a:sim-b", symbol="X/USDT:USDT", decision="skipped",
               reason="INCIDENT_OPEN", spread_bps=Decimal("12.5"))
    ledger.record_decision(row)
    ledger.record_decision(row)
    assert ledger.counts()["scanner_decisions"] == 1


def test_migrations_match_the_models(ledger: Ledger):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ledger.models import Base

    with ledger.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == "0002"
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], diff
    Ledger(ledger.url)  # migrating again is a no-op
