"""Leases per (venue, symbol) on SQLite and on PostgreSQL (skipped, with the reason, when none is
reachable): two concurrent acquisitions of overlapping pairs → exactly one wins; all or nothing;
idempotent re-acquire and release; the 0002 migration upgrades a 0001 database; the activities
report a refusal and fail closed when the ledger cannot be reached."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from ops_helpers import fresh_pg_database, pg_admin_url
from sqlalchemy import create_engine, event, inspect, text
from temporalio.testing import ActivityEnvironment

from activities.ledger import LedgerActivities
from ledger import Ledger
from ledger.repository import MIGRATIONS
from messages.trade import LeasePair, LeaseRelease, LeaseRequest

PG_URL, PG_REASON = pg_admin_url()
X = "X/USDT:USDT"
A, B, C = ("sim-a", X), ("sim-b", X), ("sim-c", X)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The URL of an empty database (not migrated yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.sqlite"
        return
    if PG_URL is None:
        pytest.skip(PG_REASON)
    with fresh_pg_database(PG_URL) as url:
        yield url


@pytest.fixture
def ledger(db_url):
    led = Ledger(db_url)
    yield led
    led.close()


def held(led: Ledger) -> dict[tuple[str, str], str]:
    return {(lease.venue, lease.symbol): lease.trade_id for lease in led.leases()}


def test_same_trade_reacquires_and_release_frees_for_another(ledger: Ledger):
    assert ledger.acquire_leases("t1", [A, B], 1000).acquired
    first = [(r.id, r.acquired_ms) for r in ledger.leases()]
    again = ledger.acquire_leases("t1", [B, A], 2000)  # an activity retry, in any order
    assert (again.acquired, again.held_by) == (True, {})
    assert [(r.id, r.acquired_ms) for r in ledger.leases()] == first  # nothing rewritten
    refused = ledger.acquire_leases("t2", [A, B])
    assert (refused.acquired, refused.held_by) == (False, {"sim-a|" + X: "t1", "sim-b|" + X: "t1"})
    assert ledger.release_leases("t1") == 2
    assert ledger.release_leases("t1") == 0  # idempotent
    assert ledger.leases() == []
    assert ledger.acquire_leases("t2", [A, B]).acquired
    assert held(ledger) == {A: "t2", B: "t2"}


def test_partial_overlap_takes_nothing(ledger: Ledger):
    assert ledger.acquire_leases("t1", [B], 1000).acquired
    # A sorts before B and C after it: A's insert happens before the conflict and must roll back
    res = ledger.acquire_leases("t2", [A, B, C])
    assert (res.acquired, res.held_by) == (False, {"sim-b|" + X: "t1"})
    assert held(ledger) == {B: "t1"}
    # another trade can take what t2 did not keep
    assert ledger.acquire_leases("t3", [A, C]).acquired
    assert held(ledger) == {A: "t3", B: "t1", C: "t3"}
    # a trade holding part of what it asks for, the rest taken by others: keeps only what it had
    res = ledger.acquire_leases("t1", [B, C])
    assert (res.acquired, res.held_by) == (False, {"sim-c|" + X: "t3"})
    assert held(ledger) == {A: "t3", B: "t1", C: "t3"}


def test_an_empty_request_is_refused(ledger: Ledger):
    with pytest.raises(ValueError):
        ledger.acquire_leases("t1", [])


def _race(url: str, asks: dict[str, list[tuple[str, str]]], *, hold_first_s: float = 0.0) -> dict[str, bool]:
    """Each trade acquires from its own Ledger (engine, connection) in its own thread, all at
    once. ``hold_first_s``: the first trade sleeps that long inside its transaction after its
    first lease insert, so the others certainly run into the uncommitted row."""
    ledgers = {tid: Ledger(url, run_migrations=False) for tid in asks}
    first = next(iter(asks))
    inserted = threading.Event()
    if hold_first_s:
        @event.listens_for(ledgers[first].engine, "after_cursor_execute")
        def _stall(conn, cursor, statement, *args):  # noqa: ANN001
            if statement.lstrip().upper().startswith("INSERT INTO LEASES") and not inserted.is_set():
                inserted.set()
                time.sleep(hold_first_s)
    barrier = threading.Barrier(len(asks))

    def go(tid: str) -> bool:
        barrier.wait()
        if hold_first_s and tid != first:
            assert inserted.wait(10)
        return ledgers[tid].acquire_leases(tid, asks[tid]).acquired

    try:
        with ThreadPoolExecutor(len(asks)) as ex:
            futs = {tid: ex.submit(go, tid) for tid in asks}
            return {tid: f.result(timeout=60) for tid, f in futs.items()}
    finally:
        for led in ledgers.values():
            led.close()


def test_concurrent_acquisitions_exactly_one_wins(ledger: Ledger):
    # the first trade's insert is uncommitted while the second inserts the same pairs (reversed)
    won = _race(ledger.url, {"t1": [A, B], "t2": [B, A]}, hold_first_s=0.5)
    assert won == {"t1": True, "t2": False}
    assert held(ledger) == {A: "t1", B: "t1"}
    ledger.release_leases("t1")
    # and free-running races, partial overlap, several rounds: never two winners, never a half
    for i in range(15):
        asks = {f"r{i}-1": [A, B], f"r{i}-2": [B, C], f"r{i}-3": [C, A]}
        won = _race(ledger.url, asks)
        winners = [tid for tid, ok in won.items() if ok]
        assert len(winners) == 1, won  # every two asks overlap: exactly one can hold
        assert held(ledger) == {p: winners[0] for p in asks[winners[0]]}
        ledger.release_leases(winners[0])


def test_migration_upgrades_a_0001_database(db_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from ledger.models import Base

    engine = create_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text(
            "INSERT INTO trades (trade_id, symbol, long_venue, short_venue, notional_usd, target_qty, state,"
            " emergency, fees_usd, funding_usd, updated_ms) VALUES ('old', 'X', 'sim-a', 'sim-b', '1000', '1',"
            " 'holding', false, '0', '0', 1)"
        ))
    assert "leases" not in inspect(engine).get_table_names()
    engine.dispose()

    led = Ledger(db_url)  # opening migrates to head
    try:
        with led.engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            assert ctx.get_current_revision() == "0002"
            assert compare_metadata(ctx, Base.metadata) == []
        assert led.trade("old").notional_usd == Decimal("1000")  # the 0001 data is kept
        assert led.acquire_leases("t1", [A]).acquired and not led.acquire_leases("t2", [A]).acquired
    finally:
        led.close()


class _Acts(LedgerActivities):
    def __init__(self, led: Ledger) -> None:
        super().__init__(settings=None, pool=None)  # type: ignore[arg-type]
        self._ledger = led


def _req(tid: str, *pairs: tuple[str, str]) -> LeaseRequest:
    return LeaseRequest(trade_id=tid, pairs=[LeasePair(venue=v, symbol=s) for v, s in pairs])


async def test_activities_take_refuse_and_release(ledger: Ledger):
    env, acts = ActivityEnvironment(), _Acts(ledger)
    ok = await env.run(acts.acquire_leases, _req("t1", A, B))
    assert (ok.acquired, ok.held_by) == (True, {})
    assert (await env.run(acts.acquire_leases, _req("t1", A, B))).acquired  # retry
    no = await env.run(acts.acquire_leases, _req("t2", B, C))
    assert (no.acquired, no.held_by) == (False, {"sim-b|" + X: "t1"})
    assert await env.run(acts.release_leases, LeaseRelease(trade_id="t1")) == 2
    assert await env.run(acts.release_leases, LeaseRelease(trade_id="t1")) == 0
    assert (await env.run(acts.acquire_leases, _req("t2", B, C))).acquired
    with pytest.raises(ValueError):
        LeaseRequest(trade_id="t3", pairs=[])


async def test_an_unreachable_ledger_fails_closed():
    down = Ledger("postgresql+psycopg://nobody@127.0.0.1:1/none", run_migrations=False)
    try:
        with pytest.raises(Exception) as exc:  # noqa: B017 - whatever the driver raises, never "acquired"
            await ActivityEnvironment().run(_Acts(down).acquire_leases, _req("t1", A))
        assert "OperationalError" in type(exc.value).__name__
    finally:
        down.close()


class _Trades:
    def __init__(self, running: set[str]) -> None:
        self.running = running

    async def trade_running(self, client, trade_id: str) -> bool:
        return trade_id in self.running


async def test_reconcile_releases_only_leases_of_trades_that_ended(ledger: Ledger):
    """A terminated trade's lease would keep its symbol closed forever: reconcile releases it
    (once older than a minute); a running trade's lease stays."""
    from activities.reconcile import Reconciler
    from config import Settings
    from messages.trade import ReconcileReport

    old = int(time.time() * 1000) - 120_000
    assert ledger.acquire_leases("trade-gone", [("sim-a", "X/USDT:USDT")], old).acquired
    assert ledger.acquire_leases("trade-live", [("sim-b", "Y/USDT:USDT")], old).acquired
    assert ledger.acquire_leases("trade-new", [("sim-c", "Z/USDT:USDT")]).acquired  # just taken
    rec = Reconciler(Settings(), None, ledger, None, _Trades({"trade-live"}))
    report = ReconcileReport(at_ms=0)
    await rec._release_stale_leases(None, report)
    assert {lease.trade_id for lease in ledger.leases()} == {"trade-live", "trade-new"}
    assert report.alerts == ["lease_released:sim-a:X/USDT:USDT"]
