"""Rewrite the initial migration from mailtix/store/tables.py.

While mailtix has no released schema, 0001 is regenerated rather than
stacked with new revisions. Run: .venv/bin/python scripts/regen-migration.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from mailtix.store.db import MIGRATIONS, Database

versions = MIGRATIONS / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    db = Database(f"sqlite:///{tmp}/empty.db")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
for new in versions.glob("0001_*.py"):
    print("wrote", new.relative_to(Path.cwd()))
