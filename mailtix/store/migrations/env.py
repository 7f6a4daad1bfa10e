"""Alembic environment: migrations run on the connection `Database.upgrade` hands in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import mailtix.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through mailtix.store.db.Database.upgrade")
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
