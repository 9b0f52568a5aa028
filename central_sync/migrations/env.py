"""Alembic environment of the central store. Used programmatically by
:func:`central_sync.storage.store.migrate` (``cfg.attributes["connection"]``) or from the command
line with ``alembic -x url=sqlite:///anqi-central.db -c central_sync/alembic.ini upgrade head``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from central_sync.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: pass the database with -x url=...")
    engine = create_engine(url)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one migrator at a time (see CentralStore.migrate)
            from sqlalchemy import text

            from central_sync.storage.store import MIGRATION_LOCK_KEY

            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
