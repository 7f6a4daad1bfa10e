"""Engines, sessions and schema upgrades, for SQLite (WAL) and PostgreSQL.

`Database` is built once by the daemon or the CLI and handed down. Writers use
`db.write()`: on SQLite that is `BEGIN IMMEDIATE`, so a transaction that will
write takes the lock up front instead of failing half-way with "database is
locked"; readers use `db.read()`. Errors that mean "the database cannot be
used now" become `StoreUnavailable` (SMTP 451, exit 75).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from mailtix.errors import StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"

# Errors that say "not now" rather than "never": a locked or unreachable
# database, a full or read-only disk, a dropped connection.
_TEMPORARY = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)


class Database:
    """The engines of one database URL, and how to open transactions on them."""

    def __init__(self, url: str, *, busy_timeout: float = 10.0, pool_size: int = 5) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        if self.is_sqlite:
            db_path = parsed.database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = self._sqlite_engine(url, busy_timeout, "IMMEDIATE")
            self.read_engine = self._sqlite_engine(url, busy_timeout, "DEFERRED")
        else:
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self.read_engine = self.engine

    @staticmethod
    def _sqlite_engine(url: str, busy_timeout: float, begin: str) -> Engine:
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
            poolclass=NullPool if ":memory:" in url else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event, not the driver, open transactions.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(f"BEGIN {begin}")

        return engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction, committed on success."""
        with (
            _translate_errors(),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing is committed."""
        with _translate_errors(), Session(self.read_engine, expire_on_commit=False) as session:
            yield session

    def upgrade(self) -> None:
        """Apply every pending migration (`mailtix db upgrade`)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with _translate_errors(), self.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    def has_schema(self) -> bool:
        """True once `upgrade` has created the tables."""
        from sqlalchemy import inspect

        with _translate_errors(), self.read_engine.connect() as conn:
            return inspect(conn).has_table("spool_item")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def is_temporary(err: BaseException) -> bool:
    """True if err means "the database cannot be used now" rather than a bug."""
    return isinstance(err, _TEMPORARY)


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except _TEMPORARY as err:
        raise StoreUnavailable(f"database unavailable: {_first_line(err)}") from err


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
