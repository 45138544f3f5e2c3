"""Ledger tables (SQLAlchemy 2.0). Money and quantities are Decimal end to end.

``Money`` stores Decimals exactly: NUMERIC(38, 18) on PostgreSQL, text on SQLite (whose
NUMERIC is a float). Facts from venues (orders, fills, funding payments) are keyed by the
venue's own identifiers so an upsert of the same fact is a no-op.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Money(TypeDecorator):
    """Exact Decimal: NUMERIC(38,18) on PostgreSQL, TEXT elsewhere."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        d = value if isinstance(value, Decimal) else Decimal(str(value))
        return d if dialect.name == "postgresql" else format(d, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        d = value if isinstance(value, Decimal) else Decimal(str(value))
        # NUMERIC(38,18) pads with zeros; drop them without going to exponent form
        if d == d.to_integral():
            return d.quantize(Decimal(1))
        return d.normalize()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Trade(Base):
    __tablename__ = "trades"

    trade_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), index=True)
    long_venue: Mapped[str] = mapped_column(String(32))
    short_venue: Mapped[str] = mapped_column(String(32))
    notional_usd: Mapped[Decimal] = mapped_column(Money)
    target_qty: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    state: Mapped[str] = mapped_column(String(32), index=True)
    opened_by: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[str | None] = mapped_column(String(40))
    hedged_at: Mapped[str | None] = mapped_column(String(40))
    closed_at: Mapped[str | None] = mapped_column(String(40))
    open_ms: Mapped[int | None] = mapped_column(BigInteger)
    close_reason: Mapped[str | None] = mapped_column(Text)
    abort_reason: Mapped[str | None] = mapped_column(Text)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    hedge_gap: Mapped[Decimal | None] = mapped_column(Money)
    orphan_exposure_ms: Mapped[int | None] = mapped_column(BigInteger)
    price_pnl_usd: Mapped[Decimal | None] = mapped_column(Money)
    fees_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    funding_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    realized_pnl_usd: Mapped[Decimal | None] = mapped_column(Money)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("venue", "client_order_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    venue: Mapped[str] = mapped_column(String(32))
    client_order_id: Mapped[str] = mapped_column(String(64))
    venue_order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    trade_id: Mapped[str | None] = mapped_column(ForeignKey("trades.trade_id"), index=True)
    leg: Mapped[str | None] = mapped_column(String(8))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(24))
    requested_qty: Mapped[Decimal] = mapped_column(Money)
    filled_qty: Mapped[Decimal] = mapped_column(Money)
    avg_price: Mapped[Decimal | None] = mapped_column(Money)
    fee: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Fill(Base):
    __tablename__ = "fills"
    # a venue's fill id is unique on that venue; the trade id keeps a reset paper venue's
    # restarted ids apart
    __table_args__ = (UniqueConstraint("venue", "venue_trade_id", "trade_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    venue: Mapped[str] = mapped_column(String(32))
    venue_trade_id: Mapped[str] = mapped_column(String(64))
    venue_order_id: Mapped[str] = mapped_column(String(64), index=True)
    trade_id: Mapped[str] = mapped_column(ForeignKey("trades.trade_id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    fee: Mapped[Decimal] = mapped_column(Money)
    realized_pnl: Mapped[Decimal] = mapped_column(Money)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class FundingPayment(Base):
    __tablename__ = "funding_payments"
    __table_args__ = (UniqueConstraint("venue", "income_id", "trade_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    venue: Mapped[str] = mapped_column(String(32))
    income_id: Mapped[str] = mapped_column(String(64))
    trade_id: Mapped[str] = mapped_column(ForeignKey("trades.trade_id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class Incident(Base):
    """An operational problem. ``open_key`` equals ``key`` while unresolved and is NULL once
    resolved, so at most one open incident exists per key (NULLs never collide)."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    venue: Mapped[str | None] = mapped_column(String(32))
    symbol: Mapped[str | None] = mapped_column(String(64))
    qty: Mapped[Decimal | None] = mapped_column(Money)
    detail: Mapped[str] = mapped_column(Text)
    first_seen_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    resolved_ms: Mapped[int | None] = mapped_column(BigInteger)
    resolution: Mapped[str | None] = mapped_column(Text)


class ScannerDecision(Base):
    __tablename__ = "scanner_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_key: Mapped[str] = mapped_column(String(200), unique=True)
    symbol: Mapped[str] = mapped_column(String(64))
    long_venue: Mapped[str | None] = mapped_column(String(32))
    short_venue: Mapped[str | None] = mapped_column(String(32))
    spread_bps: Mapped[Decimal | None] = mapped_column(Money)
    decision: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text)
    trade_id: Mapped[str | None] = mapped_column(String(128))
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Lease(Base):
    """Who may trade ``symbol`` on ``venue`` (one-way position mode nets positions, so one trade
    at a time): taken before the first order, released once flat. The unique (venue, symbol)
    pair is the lock itself."""

    __tablename__ = "leases"
    __table_args__ = (UniqueConstraint("venue", "symbol"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    venue: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(64))
    trade_id: Mapped[str] = mapped_column(String(128), index=True)
    acquired_ms: Mapped[int] = mapped_column(BigInteger)
