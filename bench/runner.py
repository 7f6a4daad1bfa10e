"""Runner benchmark: what one new ticket costs in the spool runner, end to end.

Run: `.venv/bin/python bench/runner.py` (options: --help). It

* builds a fresh, migrated database: SQLite (WAL, synchronous=FULL) in a
  temporary directory, or a throwaway PostgreSQL database with --db-url;
* spools N distinct ~2 KB customer messages (source "smtp", envelope sender
  equal to the From address, rcpt support@example.com) in one transaction;
* times `Runner(db, cfg, clock).run_once()` draining them: every message
  opens a ticket, acknowledges the customer and notifies the queue's two
  agents (three outbox rows);
* prints ms/ticket and tickets/s, split into parse (`ingest.prepare`) and
  apply (the write transactions); `--profile` adds cProfile's top entries.

It prints figures; it is not a test. The machine is shared and noisy:
compare figures taken close together, and use --repeat.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_database
from mailtix import config as config_mod
from mailtix.config import Config
from mailtix.runner import Runner
from mailtix.services import ingest
from mailtix.store import spool
from mailtix.store.db import Database
from mailtix.store.tables import OutboxItem, Ticket

RCPT = "support@example.com"


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_message(tag: str, n: int, size: int) -> tuple[bytes, str]:
    """A distinct CRLF customer message of about size bytes, and its sender."""
    sender = f"customer{n}.{tag}@load.example"
    head = (
        f"From: Customer {n} <{sender}>\r\n"
        f"To: Support <{RCPT}>\r\n"
        f"Subject: The printer on floor {n % 7} is on fire ({tag} {n})\r\n"
        f"Message-ID: <{tag}.{n}@load.example>\r\n"
        "Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = f"Hello, line of message {n} in run {tag}: the printer is on fire again.".encode()
    body = b""
    while len(head) + len(body) < size:
        body += line[:76] + b"\r\n"
    return head + body, sender


def bench_config(db_url: str, workdir: Path) -> Config:
    """A config on db_url: one queue, two agents on it, maildir transport."""
    data = {
        "database": {"url": db_url},
        "listener": {"host": "127.0.0.1", "port": 0, "hostname": "bench"},
        "outbound": {
            "transport": "maildir",
            "maildir": str(workdir / "sent"),
            "from_address": RCPT,
        },
        "queue": [{"name": "support", "addresses": [RCPT]}],
        "agent": [
            {"email": "alice@example.com", "name": "Alice", "queues": ["support"]},
            {"email": "bob@example.com", "name": "Bob", "queues": ["support"]},
        ],
        "security": {"reply_secret": "bench-secret-0123456789"},
        "tickets": {"attachment_dir": str(workdir / "attachments")},
    }
    return config_mod.parse(data, {}, workdir)


@dataclass
class Figures:
    """One drain of the spool."""

    tickets: int
    seconds: float
    parse_seconds: float

    @property
    def ms_per_ticket(self) -> float:
        return 1000 * self.seconds / self.tickets

    @property
    def parse_ms(self) -> float:
        return 1000 * self.parse_seconds / self.tickets


def _timed(fn: Callable[..., Any], acc: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[0] += time.perf_counter() - t0

    return wrapper


def run(url: str, workdir: Path, n: int, size: int, profile: cProfile.Profile | None) -> Figures:
    """Spool n messages on a fresh database at url and drain them with one Runner."""
    cfg = bench_config(url, workdir)
    db = Database(url)
    db.upgrade()
    tag = uuid.uuid4().hex[:6]
    msgs = [make_message(tag, i, size) for i in range(n)]
    try:
        with db.write() as s:
            stored = spool.put_many(
                s,
                [(raw, spool.Envelope("smtp", sender, (RCPT,))) for raw, sender in msgs],
                utcnow(),
            )
        assert all(not st.duplicate for st in stored)
        runner = Runner(db, cfg, utcnow)
        parse = [0.0]
        prepare = ingest.prepare
        ingest.prepare = _timed(prepare, parse)  # the runner calls it through the module
        try:
            if profile is not None:
                profile.enable()
            t0 = time.perf_counter()
            outcomes = runner.run_once()
            seconds = time.perf_counter() - t0
            if profile is not None:
                profile.disable()
        finally:
            ingest.prepare = prepare
            runner.close()
        bad = [o for o in outcomes if o.state != "done"]
        if bad:
            raise SystemExit(f"{len(bad)} items not done, e.g. {bad[0]}")
        with db.read() as s:
            made = int(s.scalar(select(func.count()).select_from(Ticket)) or 0)
            rows = int(s.scalar(select(func.count()).select_from(OutboxItem)) or 0)
        if made != n or rows != 3 * n:
            raise SystemExit(f"expected {n} tickets and {3 * n} outbox rows, got {made}, {rows}")
        return Figures(n, seconds, parse[0])
    finally:
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    p.add_argument("--size", type=int, default=2048, help="bytes per message (default 2048)")
    p.add_argument("--repeat", type=int, default=1, help="runs; the median is shown")
    p.add_argument(
        "--db-url",
        default=None,
        help="PostgreSQL URL of a role that may CREATE DATABASE (default: SQLite in a temp dir)",
    )
    p.add_argument("--profile", action="store_true", help="print cProfile's top entries")
    p.add_argument("--top", type=int, default=35, help="entries to print with --profile")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    where = "PostgreSQL" if args.db_url else "SQLite (WAL, synchronous=FULL)"
    print(
        f"{args.messages} new tickets from ~{args.size} B messages, 2 agents, {where}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    profile = cProfile.Profile() if args.profile else None
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            with fresh_database(args.db_url, Path(tmp)) as url:
                f = run(url, Path(tmp), args.messages, args.size, profile)
            figures.append(f)
            print(
                f"run {i + 1}: {f.ms_per_ticket:.2f} ms/ticket = "
                f"{1000 / f.ms_per_ticket:.0f} tickets/s "
                f"(parse {f.parse_ms:.2f} ms, apply {f.ms_per_ticket - f.parse_ms:.2f} ms)",
                flush=True,
            )
    if len(figures) > 1:
        ms = statistics.median(f.ms_per_ticket for f in figures)
        parse = statistics.median(f.parse_ms for f in figures)
        print(f"median: {ms:.2f} ms/ticket = {1000 / ms:.0f} tickets/s (parse {parse:.2f} ms)")
    if profile is not None:
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(key).print_stats(args.top)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
