"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and configs.

Every test that asks for `db` (or `db_url`) runs twice: once on a fresh SQLite
file, once on a fresh PostgreSQL database cloned from a migrated template.
PostgreSQL comes from $MAILTIX_TEST_PG_URL (an admin URL that may CREATE
DATABASE; `make test` starts the local cluster and sets it). Without it the
PostgreSQL half skips with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from mailtix import config as config_mod
from mailtix.config import Config
from mailtix.store.db import Database

CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get("MAILTIX_TEST_PG_URL", "")
REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def need(condition: bool, reason: str) -> None:
    """Skip the test for reason, or fail it under CI=true where it must run."""
    if not condition:
        if CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)


# ---------------------------------------------------------------- databases
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


class _PgServer:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.template = f"mailtix_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    def url_for(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create(self, name: str, template: str = "template0") -> str:
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        return self.url_for(name)

    def truncate_all(self) -> None:
        engine = create_engine(self.url_for(self.template), poolclass=NullPool)
        try:
            with engine.begin() as conn:
                names = (
                    conn.execute(
                        text(
                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                            "AND tablename <> 'alembic_version'"
                        )
                    )
                    .scalars()
                    .all()
                )
                if names:
                    quoted = ", ".join(f'"{n}"' for n in names)
                    conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
        finally:
            engine.dispose()

    def drop(self, name: str) -> None:
        with self.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[_PgServer | None]:
    if not PG_ADMIN_URL:
        yield None
        return
    try:
        server = _PgServer(PG_ADMIN_URL)
        url = server.create(server.template)
    except Exception as err:
        pytest.exit(f"PostgreSQL at MAILTIX_TEST_PG_URL is unusable: {err}", returncode=1)
    db = Database(url)
    db.upgrade()
    db.dispose()
    yield server
    server.drop(server.template)
    server.engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database; SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        path = tmp_path / "mailtix.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    need(bool(PG_ADMIN_URL), "PostgreSQL not configured (set MAILTIX_TEST_PG_URL; make test does)")
    server: _PgServer | None = request.getfixturevalue("pg_server")
    assert server is not None
    # One migrated database per session, emptied before each test: a fresh
    # CREATE DATABASE costs ~1 s on a durable cluster, TRUNCATE a few ms.
    server.truncate_all()
    yield server.url_for(server.template)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database on a fresh, migrated schema (runs on SQLite and PostgreSQL)."""
    database = Database(db_url)
    yield database
    database.dispose()


# ------------------------------------------------------------------ configs
BASE_CONFIG: dict[str, Any] = {
    "listener": {"host": "127.0.0.1", "port": 0},
    "outbound": {"transport": "maildir", "from_address": "support@example.com"},
    "queue": [
        {"name": "support", "addresses": ["support@example.com"]},
        {"name": "billing", "addresses": ["billing@example.com"], "language": "fr"},
    ],
    "agent": [
        {"email": "alice@example.com", "name": "Alice", "queues": ["support"]},
        {"email": "bob@example.com", "name": "Bob", "queues": ["support", "billing"]},
    ],
    "manager": [{"email": "boss@example.com", "name": "Boss"}],
    "security": {"reply_secret": "test-secret-0123456789"},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


ConfigFactory = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Build a validated Config rooted in tmp_path; keyword sections override the base."""

    def factory(
        db_url: str | None = None, env: dict[str, str] | None = None, **sections: Any
    ) -> Config:
        data = _merge(BASE_CONFIG, sections)
        if db_url is not None:
            data = _merge(data, {"database": {"url": db_url}})
        data.setdefault("outbound", {}).setdefault("maildir", str(tmp_path / "sent"))
        data.setdefault("tickets", {}).setdefault("attachment_dir", str(tmp_path / "attachments"))
        return config_mod.parse(data, env or {}, tmp_path)

    return factory


@pytest.fixture
def config(make_config: ConfigFactory, db_url: str) -> Config:
    """The base test config on the parametrised database."""
    return make_config(db_url=db_url)
