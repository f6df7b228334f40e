"""Alembic environment: runs on the connection that ``treadle.store.db.upgrade`` passes in."""

from __future__ import annotations

from alembic import context

from treadle.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` command line: build an engine from the URL
    from sqlalchemy import create_engine

    connection = create_engine(config.get_main_option("sqlalchemy.url")).connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
