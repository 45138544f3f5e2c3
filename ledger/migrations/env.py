"""Alembic environment: run programmatically by ``ledger.repository.migrate`` (``upgrade head``)
on the connection it passes in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from ledger.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=False,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # several workers may start together: one migrates, the others wait
            connection.execute(text("SELECT pg_advisory_xact_lock(7263541)"))
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the `alembic` CLI with sqlalchemy.url set
    from sqlalchemy import create_engine

    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
        _run(conn)
else:
    _run(connection)
