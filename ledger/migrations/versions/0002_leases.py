"""leases: one trade per (venue, symbol), taken before any order and released once flat

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("venue", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("trade_id", sa.String(128), nullable=False),
        sa.Column("acquired_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
        sa.UniqueConstraint("venue", "symbol", name=op.f("uq_leases_venue_symbol")),
    )
    op.create_index(op.f("ix_leases_trade_id"), "leases", ["trade_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_leases_trade_id"), table_name="leases")
    op.drop_table("leases")
