"""The ledger repository: every write is an upsert keyed by a natural key, so a retried
activity writes nothing twice.

``Ledger(url)`` opens (and by default migrates) the database; ``Ledger.for_settings(settings)``
returns one shared instance per URL per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from domain.lifecycle import TERMINAL
from ledger.models import Base, Fill, FundingPayment, Incident, Lease, Order, ScannerDecision, Trade

ZERO = Decimal(0)
MIGRATIONS = Path(__file__).with_name("migrations")
TERMINAL_STATES = tuple(sorted(s.value for s in TERMINAL))  # as stored in the trade rows


def now_ms() -> int:
    return int(time.time() * 1000)


def mask_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def migrate(engine: Engine) -> None:
    """``alembic upgrade head`` on ``engine``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@dataclass(frozen=True)
class PnL:
    price_pnl: Decimal
    fees: Decimal
    funding: Decimal

    @property
    def total(self) -> Decimal:
        return self.price_pnl - self.fees + self.funding


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    key: str
    kind: str
    venue: str | None
    symbol: str | None
    qty: Decimal | None
    detail: str
    first_seen_ms: int
    resolved_ms: int | None
    resolution: str | None


@dataclass(frozen=True)
class LeaseResult:
    """``acquire_leases``: all pairs taken (``acquired``), or none and who holds which pair
    (``held_by``: "venue|symbol" → trade id)."""

    acquired: bool
    held_by: dict[str, str]


def lease_key(venue: str, symbol: str) -> str:
    return f"{venue}|{symbol}"


class _LeasesHeld(Exception):
    def __init__(self, held_by: dict[str, str]) -> None:
        super().__init__(held_by)
        self.held_by = held_by


class Ledger:
    _shared: dict[str, Ledger] = {}
    _shared_lock = threading.Lock()

    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        u = make_url(url)
        kwargs: dict[str, Any] = {"future": True}
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine = create_engine(url, **kwargs)
        if u.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.dialect = self.engine.dialect.name
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        if run_migrations:
            migrate(self.engine)

    @classmethod
    def for_settings(cls, settings: Any) -> Ledger:
        url = settings.ledger_url()
        with cls._shared_lock:
            led = cls._shared.get(url)
            if led is None:
                led = cls._shared[url] = cls(url, run_migrations=settings.ledger.migrate)
            return led

    def __repr__(self) -> str:
        return f"Ledger({mask_url(self.url)})"

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ upserts
    def _insert(self, table: Any):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _upsert(
        self, s: Session, model: type[Base], rows: Sequence[dict[str, Any]], keys: Sequence[str],
        *, update_cols: Iterable[str] | None = None,
    ) -> None:
        if not rows:
            return
        table = model.__table__
        for row in rows:
            stmt = self._insert(table).values(**row)
            cols = [c for c in (update_cols if update_cols is not None else row) if c not in keys and c in row]
            if cols:
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(keys), set_={c: stmt.excluded[c] for c in cols}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
            s.execute(stmt)

    def upsert_trade(self, row: dict[str, Any]) -> str | None:
        """Insert or update one trade; return the state it had before (None if new)."""
        row = {**row, "updated_ms": row.get("updated_ms") or now_ms()}
        with self._session.begin() as s:
            q = select(Trade.state).where(Trade.trade_id == row["trade_id"])
            if self.dialect == "postgresql":
                q = q.with_for_update()
            prev = s.execute(q).scalar_one_or_none()
            self._upsert(s, Trade, [row], ["trade_id"])
            return prev

    def record_trade_bundle(
        self, trade: dict[str, Any], orders: Sequence[dict[str, Any]], fills: Sequence[dict[str, Any]],
        funding: Sequence[dict[str, Any]],
    ) -> str | None:
        """One transaction: the trade row, its orders, fills and funding payments. Returns the
        trade's state before this write (None if it is new). A finished trade's row is never
        moved back to a running state by a write that lands late (an ``opened`` record still
        in flight when the trade closed); its orders, fills and funding are still merged."""
        trade = {**trade, "updated_ms": trade.get("updated_ms") or now_ms()}
        with self._session.begin() as s:
            q = select(Trade.state).where(Trade.trade_id == trade["trade_id"])
            if self.dialect == "postgresql":
                q = q.with_for_update()
            prev = s.execute(q).scalar_one_or_none()
            if not (prev in TERMINAL_STATES and trade.get("state") not in TERMINAL_STATES):
                self._upsert(s, Trade, [trade], ["trade_id"])
            self._upsert(s, Order, orders, ["venue", "client_order_id"])
            self._upsert(s, Fill, fills, ["venue", "venue_trade_id", "trade_id"], update_cols=())
            self._upsert(s, FundingPayment, funding, ["venue", "income_id", "trade_id"], update_cols=())
            return prev

    def upsert_orders(self, rows: Sequence[dict[str, Any]]) -> None:
        with self._session.begin() as s:
            self._upsert(s, Order, rows, ["venue", "client_order_id"])

    def upsert_fills(self, rows: Sequence[dict[str, Any]]) -> None:
        """Fills are immutable facts: the first write wins."""
        with self._session.begin() as s:
            self._upsert(s, Fill, rows, ["venue", "venue_trade_id", "trade_id"], update_cols=())

    def upsert_funding(self, rows: Sequence[dict[str, Any]]) -> None:
        with self._session.begin() as s:
            self._upsert(s, FundingPayment, rows, ["venue", "income_id", "trade_id"], update_cols=())

    def record_decision(self, row: dict[str, Any]) -> None:
        row = {"at_ms": now_ms(), **row}
        with self._session.begin() as s:
            self._upsert(s, ScannerDecision, [row], ["decision_key"], update_cols=())

    def record_incident(
        self, key: str, kind: str, detail: str, *, venue: str | None = None, symbol: str | None = None,
        qty: Decimal | None = None, at_ms: int | None = None,
    ) -> tuple[int, bool]:
        """Open an incident for ``key`` or refresh the open one; return (id, newly_opened)."""
        t = at_ms or now_ms()
        with self._session.begin() as s:
            existing = s.execute(select(Incident.id).where(Incident.open_key == key)).scalar_one_or_none()
            row = dict(key=key, open_key=key, kind=kind, venue=venue, symbol=symbol, qty=qty, detail=detail,
                       first_seen_ms=t, last_seen_ms=t)
            self._upsert(s, Incident, [row], ["open_key"], update_cols=("detail", "qty", "last_seen_ms"))
            inc_id = s.execute(select(Incident.id).where(Incident.open_key == key)).scalar_one()
            return inc_id, existing is None

    def resolve_incident(self, key_or_id: str | int, resolution: str) -> bool:
        cond = Incident.id == key_or_id if isinstance(key_or_id, int) else Incident.open_key == key_or_id
        with self._session.begin() as s:
            res = s.execute(
                update(Incident).where(cond, Incident.open_key.is_not(None))
                .values(open_key=None, resolved_ms=now_ms(), resolution=resolution)
            )
            return res.rowcount > 0

    # ------------------------------------------------------------------ leases
    def acquire_leases(
        self, trade_id: str, pairs: Sequence[tuple[str, str]], at_ms: int | None = None
    ) -> LeaseResult:
        """Take every (venue, symbol) lease for ``trade_id`` in one transaction, or none.

        Each pair is ``INSERT .. ON CONFLICT DO NOTHING`` (the unique pair is the lock; on
        PostgreSQL a concurrent uncommitted insert of the same pair blocks until it commits or
        rolls back, and pairs go in a fixed order so two trades cannot deadlock; SQLite has one
        writer at a time). Then the holders are read back: any pair held by another trade rolls
        the whole transaction back. Pairs this trade already holds count as taken (retries)."""
        want = sorted(set(pairs))
        if not want:
            raise ValueError("acquire_leases needs at least one (venue, symbol) pair")
        t = at_ms or now_ms()
        for _ in range(3):
            try:
                with self._session.begin() as s:
                    for venue, symbol in want:
                        stmt = self._insert(Lease.__table__).values(
                            venue=venue, symbol=symbol, trade_id=trade_id, acquired_ms=t
                        ).on_conflict_do_nothing(index_elements=["venue", "symbol"])
                        s.execute(stmt)
                    rows = s.execute(
                        select(Lease.venue, Lease.symbol, Lease.trade_id)
                        .where(tuple_(Lease.venue, Lease.symbol).in_(want))
                    ).all()
                    held = {lease_key(v, sym): tid for v, sym, tid in rows if tid != trade_id}
                    if held or len(rows) != len(want):
                        raise _LeasesHeld(held)
                return LeaseResult(True, {})
            except _LeasesHeld as exc:  # rolled back: nothing of this call stays
                if exc.held_by:
                    return LeaseResult(False, exc.held_by)
                # a conflicting lease was released between our insert and our read: again
        raise RuntimeError(f"leases for {trade_id} kept changing under acquire_leases")

    def release_leases(self, trade_id: str) -> int:
        """Drop every lease ``trade_id`` holds; the number dropped (0 when run again)."""
        with self._session.begin() as s:
            return s.execute(delete(Lease).where(Lease.trade_id == trade_id)).rowcount

    def leases(self, trade_id: str | None = None) -> list[Lease]:
        q = select(Lease).order_by(Lease.venue, Lease.symbol)
        if trade_id is not None:
            q = q.where(Lease.trade_id == trade_id)
        with self._session() as s:
            return list(s.execute(q).scalars())

    # ------------------------------------------------------------------ queries
    def trade(self, trade_id: str) -> Trade | None:
        with self._session() as s:
            return s.get(Trade, trade_id)

    def trades(self, states: Sequence[str] | None = None, limit: int = 1000) -> list[Trade]:
        q = select(Trade).order_by(Trade.open_ms.desc()).limit(limit)
        if states:
            q = q.where(Trade.state.in_(states))
        with self._session() as s:
            return list(s.execute(q).scalars())

    def orders(self, trade_id: str | None = None, since_ms: int | None = None, limit: int = 10_000) -> list[Order]:
        q = select(Order).order_by(Order.timestamp_ms.desc()).limit(limit)
        if trade_id is not None:
            q = q.where(Order.trade_id == trade_id)
        if since_ms is not None:
            q = q.where(Order.timestamp_ms >= since_ms)
        with self._session() as s:
            return list(s.execute(q).scalars())

    def fills(self, trade_id: str | None = None) -> list[Fill]:
        q = select(Fill).order_by(Fill.timestamp_ms)
        if trade_id is not None:
            q = q.where(Fill.trade_id == trade_id)
        with self._session() as s:
            return list(s.execute(q).scalars())

    def funding(self, trade_id: str | None = None) -> list[FundingPayment]:
        q = select(FundingPayment).order_by(FundingPayment.timestamp_ms)
        if trade_id is not None:
            q = q.where(FundingPayment.trade_id == trade_id)
        with self._session() as s:
            return list(s.execute(q).scalars())

    def counts(self) -> dict[str, int]:
        with self._session() as s:
            return {
                name: s.execute(select(func.count()).select_from(m)).scalar_one()
                for name, m in (("trades", Trade), ("orders", Order), ("fills", Fill),
                                ("funding_payments", FundingPayment), ("incidents", Incident),
                                ("scanner_decisions", ScannerDecision))
            }

    def trades_by_state(self) -> dict[str, int]:
        with self._session() as s:
            rows = s.execute(select(Trade.state, func.count()).group_by(Trade.state)).all()
        return {state: n for state, n in rows}

    def pnl(self, trade_id: str | None = None) -> PnL:
        """Price PnL − fees + funding from the ledger's own fills and funding payments
        (``trade_id`` None: every trade the ledger knows)."""
        price = fees = ZERO
        for f in self.fills(trade_id):
            if f.trade_id is None:
                continue
            price += f.qty * f.price if f.side == "sell" else -(f.qty * f.price)
            fees += f.fee
        funding = sum((p.amount for p in self.funding(trade_id) if p.trade_id is not None), ZERO)
        return PnL(price, fees, funding)

    def totals(self) -> dict[str, Decimal]:
        """Sums over finished trades (as the trades recorded them at close)."""
        out = {"realized_pnl_usd": ZERO, "fees_usd": ZERO, "funding_usd": ZERO}
        for t in self.trades(TERMINAL_STATES, limit=1_000_000):
            out["realized_pnl_usd"] += t.realized_pnl_usd or ZERO
            out["fees_usd"] += t.fees_usd or ZERO
            out["funding_usd"] += t.funding_usd or ZERO
        return out

    def last_trade_open_ms(self) -> int | None:
        with self._session() as s:
            return s.execute(select(func.max(Trade.open_ms))).scalar_one_or_none()

    def open_incidents(self) -> list[IncidentRecord]:
        with self._session() as s:
            rows = s.execute(select(Incident).where(Incident.open_key.is_not(None)).order_by(Incident.id)).scalars()
            return [_incident(r) for r in rows]

    def open_incident_count(self) -> int:
        """Unresolved incidents; the scanner opens nothing while this is above zero."""
        with self._session() as s:
            return s.execute(
                select(func.count()).select_from(Incident).where(Incident.open_key.is_not(None))
            ).scalar_one()

    def create_all(self) -> None:  # tests without migrations
        Base.metadata.create_all(self.engine)


def _incident(r: Incident) -> IncidentRecord:
    return IncidentRecord(r.id, r.key, r.kind, r.venue, r.symbol, r.qty, r.detail, r.first_seen_ms,
                          r.resolved_ms, r.resolution)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
