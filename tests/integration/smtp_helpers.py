"""Helpers for the edge tests: a running listener, swaks, a line-level SMTP client,
a database that is really unavailable, and a self-signed certificate."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from mailtix.config import Config
from mailtix.inbound.groupcommit import GroupCommitter
from mailtix.inbound.listener import Listener
from mailtix.store.db import Database
from mailtix.store.tables import SpoolItem

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SWAKS_TIMEOUT = 20


def message(n: int = 1, body: bytes = b"Hello.\r\n", extra: bytes = b"") -> bytes:
    """A small CRLF message with a distinct Message-ID."""
    return (
        b"From: Carol <carol@customer.org>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: printer " + str(n).encode() + b"\r\n"
        b"Message-ID: <msg-" + str(n).encode() + b"@customer.org>\r\n" + extra + b"\r\n" + body
    )


@dataclass
class Running:
    """A started listener and its committer."""

    host: str
    port: int
    listener: Listener
    committer: GroupCommitter


@contextmanager
def running(cfg: Config, db: Database, *, child_process: bool = False) -> Iterator[Running]:
    """Start a GroupCommitter and a Listener for cfg on db; stop both afterwards.

    The store runs on the committer's thread unless child_process (the daemon's
    default, whose spawn costs seconds here) is asked for.
    """
    committer = GroupCommitter(db, lambda: NOW, child_process=child_process)
    committer.start()
    listener = Listener(cfg, committer)
    try:
        host, port = listener.start()
        try:
            yield Running(host, port, listener, committer)
        finally:
            listener.stop()
    finally:
        committer.stop()


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run swaks against 127.0.0.1:port (exit codes: INFRA.md)."""
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--ehlo", "test", "--hide-informational", *args],
        capture_output=True,
        text=True,
        errors="replace",  # swaks echoes the message's 8-bit bytes
        timeout=SWAKS_TIMEOUT,
        check=False,
    )


def spooled(db: Database) -> list[SpoolItem]:
    """Every spool item, oldest first."""
    with db.read() as s:
        return list(s.scalars(select(SpoolItem).order_by(SpoolItem.id)))  # type: ignore[arg-type]


class LineClient:
    """A bare SMTP/LMTP client over a socket: send raw lines, read whole replies."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        """Send bytes as they are (several commands at once for pipelining)."""
        self.sock.sendall(data)

    def reply(self) -> list[str]:
        """The lines of the next (possibly multi-line) reply; [] at end of stream."""
        lines: list[str] = []
        while True:
            line = self.file.readline().decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                return lines
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def close(self) -> None:
        """Close the connection."""
        self.file.close()
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def unavailable(db_url: str) -> Iterator[None]:
    """Make the database at db_url really unwritable for the duration.

    SQLite: another connection holds an exclusive lock (the writer under test
    must use a short busy_timeout). PostgreSQL: the database stops accepting
    connections and its sessions are terminated, as when it is down.
    """
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(url.database), timeout=1, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    name = url.database
    admin = create_engine(os.environ["MAILTIX_TEST_PG_URL"], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        try:
            yield
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once condition() holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)
