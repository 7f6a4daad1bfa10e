"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import mailtix.store.tables  # noqa: F401
from mailtix.store.db import Database


def test_migrated_schema_matches_models(db: Database) -> None:
    """After `db upgrade` there is nothing left for autogenerate to add or change."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_upgrade_twice_is_harmless(db: Database) -> None:
    """`mailtix db upgrade` on an up-to-date database changes nothing."""
    db.upgrade()
    db.upgrade()
