"""initial ledger: trades, orders, fills, funding payments, incidents, scanner decisions

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from ledger.models import Money

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trades",
        sa.Column("trade_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("long_venue", sa.String(32), nullable=False),
        sa.Column("short_venue", sa.String(32), nullable=False),
        sa.Column("notional_usd", Money(), nullable=False),
        sa.Column("target_qty", Money(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=True),
        sa.Column("opened_at", sa.String(40), nullable=True),
        sa.Column("hedged_at", sa.String(40), nullable=True),
        sa.Column("closed_at", sa.String(40), nullable=True),
        sa.Column("open_ms", sa.BigInteger(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("abort_reason", sa.Text(), nullable=True),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("hedge_gap", Money(), nullable=True),
        sa.Column("orphan_exposure_ms", sa.BigInteger(), nullable=True),
        sa.Column("price_pnl_usd", Money(), nullable=True),
        sa.Column("fees_usd", Money(), nullable=False),
        sa.Column("funding_usd", Money(), nullable=False),
        sa.Column("realized_pnl_usd", Money(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("pk_trades")),
    )
    op.create_index(op.f("ix_trades_symbol"), "trades", ["symbol"])
    op.create_index(op.f("ix_trades_state"), "trades", ["state"])

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("venue", sa.String(32), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("venue_order_id", sa.String(64), nullable=True),
        sa.Column("trade_id", sa.String(128), nullable=True),
        sa.Column("leg", sa.String(8), nullable=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("requested_qty", Money(), nullable=False),
        sa.Column("filled_qty", Money(), nullable=False),
        sa.Column("avg_price", Money(), nullable=True),
        sa.Column("fee", Money(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["trade_id"], ["trades.trade_id"], name=op.f("fk_orders_trade_id_trades")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("venue", "client_order_id", name=op.f("uq_orders_venue_client_order_id")),
    )
    op.create_index(op.f("ix_orders_venue_order_id"), "orders", ["venue_order_id"])
    op.create_index(op.f("ix_orders_trade_id"), "orders", ["trade_id"])
    op.create_index(op.f("ix_orders_timestamp_ms"), "orders", ["timestamp_ms"])

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("venue", sa.String(32), nullable=False),
        sa.Column("venue_trade_id", sa.String(64), nullable=False),
        sa.Column("venue_order_id", sa.String(64), nullable=False),
        sa.Column("trade_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", Money(), nullable=False),
        sa.Column("price", Money(), nullable=False),
        sa.Column("fee", Money(), nullable=False),
        sa.Column("realized_pnl", Money(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["trade_id"], ["trades.trade_id"], name=op.f("fk_fills_trade_id_trades")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("venue", "venue_trade_id", "trade_id", name=op.f("uq_fills_venue_venue_trade_id_trade_id")),
    )
    op.create_index(op.f("ix_fills_venue_order_id"), "fills", ["venue_order_id"])
    op.create_index(op.f("ix_fills_trade_id"), "fills", ["trade_id"])

    op.create_table(
        "funding_payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("venue", sa.String(32), nullable=False),
        sa.Column("income_id", sa.String(64), nullable=False),
        sa.Column("trade_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["trade_id"], ["trades.trade_id"],
                                name=op.f("fk_funding_payments_trade_id_trades")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funding_payments")),
        sa.UniqueConstraint("venue", "income_id", "trade_id",
                            name=op.f("uq_funding_payments_venue_income_id_trade_id")),
    )
    op.create_index(op.f("ix_funding_payments_trade_id"), "funding_payments", ["trade_id"])

    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("open_key", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("venue", sa.String(32), nullable=True),
        sa.Column("symbol", sa.String(64), nullable=True),
        sa.Column("qty", Money(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("open_key", name=op.f("uq_incidents_open_key")),
    )
    op.create_index(op.f("ix_incidents_key"), "incidents", ["key"])

    op.create_table(
        "scanner_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decision_key", sa.String(200), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("long_venue", sa.String(32), nullable=True),
        sa.Column("short_venue", sa.String(32), nullable=True),
        sa.Column("spread_bps", Money(), nullable=True),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("trade_id", sa.String(128), nullable=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scanner_decisions")),
        sa.UniqueConstraint("decision_key", name=op.f("uq_scanner_decisions_decision_key")),
    )
    op.create_index(op.f("ix_scanner_decisions_at_ms"), "scanner_decisions", ["at_ms"])


def downgrade() -> None:
    for table in ("scanner_decisions", "incidents", "funding_payments", "fills", "orders", "trades"):
        op.drop_table(table)
