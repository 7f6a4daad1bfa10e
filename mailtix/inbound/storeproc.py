"""`spool.put_many` in a child process, so the listener's GIL is left to its sessions.

Measured on 2 cores (bench/ingest.py): fingerprinting a message and inserting
it through SQLAlchemy costs 0.15-0.4 ms of CPU per message, about half of what
aiosmtpd itself spends; in the listener's process that time is taken from the
event loop. In a child it runs on the other core. One batch is in flight at
a time and the parent waits for its commit before any 250 is sent.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import traceback
from collections.abc import Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from mailtix.errors import StoreUnavailable, TemporaryError
from mailtix.store import spool
from mailtix.store.db import Database
from mailtix.store.spool import Envelope, Stored

# A spawned child imports SQLAlchemy and SQLModel first: seconds on a busy box.
READY_SECONDS = 120.0
STOP_SECONDS = 30.0


class StoreProcessError(RuntimeError):
    """The child failed for a reason other than the database; carries its traceback."""


class StoreProcess:
    """A child process that stores batches on its own connection to db's database."""

    def __init__(self, db: Database) -> None:
        self._url = db.url
        self._busy_timeout = _busy_timeout(db)
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None
        self._ready = False
        # Started now but not waited for: its imports take a second or more, and
        # the daemon need not wait for them before it listens. The first batch does.
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None between a death and the next batch)."""
        return self._proc.pid if self._proc is not None else None

    def put_many(self, messages: Sequence[tuple[bytes, Envelope]], now: datetime) -> list[Stored]:
        """Store messages in one transaction in the child; return once it committed."""
        if self._conn is None:
            self._start()  # the previous child died: a new one for this batch
        if not self._ready:
            self._wait_ready()
        assert self._conn is not None
        try:
            self._conn.send((list(messages), now))
            kind, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            # Whether the batch committed is unknown: the sender retries, dedupe absorbs it.
            self._reap()
            raise StoreUnavailable(f"store process died: {exc!r}") from exc
        if kind == "ok":
            return value
        if kind == "temporary":
            raise StoreUnavailable(value)
        raise StoreProcessError(value)

    def close(self) -> None:
        """Ask the child to finish and wait for it."""
        if self._conn is not None:
            with contextlib.suppress(OSError):  # the child is gone already
                self._conn.send(None)
        self._reap()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_child_main,
            args=(child, self._url, self._busy_timeout),
            name="mailtix-store",
            daemon=True,
        )
        proc.start()
        child.close()
        self._conn, self._proc, self._ready = parent, proc, False

    def _wait_ready(self) -> None:
        assert self._conn is not None
        try:
            if not self._conn.poll(READY_SECONDS):
                raise EOFError(f"not ready after {READY_SECONDS:.0f} s")
            self._conn.recv()
            self._ready = True
        except (EOFError, OSError) as exc:
            self._reap()
            raise StoreUnavailable(f"store process did not start: {exc!r}") from exc

    def _reap(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None:
            proc.join(STOP_SECONDS)
            if proc.is_alive():
                proc.kill()
                proc.join()
            proc.close()
        if conn is not None:
            conn.close()


def _busy_timeout(db: Database) -> float:
    """db's SQLite busy timeout in seconds, so the child waits for locks as db would."""
    if not db.is_sqlite:
        return 10.0
    try:
        with db.engine.connect() as conn:
            return float(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) / 1000
    except Exception:
        return 10.0  # the database is not reachable now; the child will find out too


def _child_main(conn: Connection, url: str, busy_timeout: float) -> None:
    # The parent decides when we stop (None, or its end of the pipe closing): a
    # Ctrl-C or SIGTERM sent to the whole process group must not cut a commit short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    db = Database(url, busy_timeout=busy_timeout)
    try:
        conn.send(("ready", None))
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            if request is None:
                return
            conn.send(_store(db, *request))
    finally:
        db.dispose()
        conn.close()


def _store(db: Database, messages: list[tuple[bytes, Envelope]], now: datetime) -> tuple[str, Any]:
    try:
        with db.write() as session:
            return "ok", spool.put_many(session, messages, now)
    except TemporaryError as exc:
        return "temporary", str(exc)
    except Exception as exc:
        return "error", "".join(traceback.format_exception(exc)).rstrip()
