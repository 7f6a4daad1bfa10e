"""IMAP benchmark: a backlog waiting in Dovecot, drained by mailtix's poller.

Run: `.venv/bin/python bench/imap.py` (options: --help). It starts its own
Dovecot from a temp dir (tests/integration/dovecot.py), fills a fresh
account with MULTIAPPEND, and in the same run measures

* the ceiling: raw imapclient `UID FETCH BODY.PEEK[]` in batches of 50;
* the poller: `MailboxPoller.poll_once()` on a fresh database, until every
  message is in the spool and moved to Processed, and its peak memory
  (RSS high-water mark above the baseline, from /proc/self/status), for a
  small and a large backlog: flat memory means the two peaks are alike;
* end to end, when mailtix.runner exists: poller and runner in threads as
  the daemon runs them, until every message is a ticket.

It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailtix import config as config_mod
from mailtix.config import Config
from mailtix.inbound.imap import MailboxPoller
from mailtix.store.db import Database
from mailtix.store.tables import SpoolItem, Ticket
from tests.integration.dovecot import TMP_PASSWORD, DovecotServer, make_message, start_server


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ set-up
def fill(server: DovecotServer, count: int, size: int) -> tuple[str, float]:
    """A new account holding count messages of about size bytes; (user, APPEND msg/s)."""
    user = server.new_user()
    began = time.perf_counter()
    server.append(user, (make_message(n, size=size) for n in range(count)))
    return user, count / (time.perf_counter() - began)


@contextmanager
def fresh_database(pg_admin_url: str | None, workdir: Path) -> Iterator[Database]:
    """A migrated, empty database: SQLite in workdir, or a throwaway PostgreSQL one."""
    if pg_admin_url is None:
        url, drop = f"sqlite:///{workdir / uuid.uuid4().hex[:8]}.db", None
    else:
        name = f"mailtix_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        url, drop = make_url(pg_admin_url).set(database=name).render_as_string(False), name
    db = Database(url)
    try:
        db.upgrade()
        yield db
    finally:
        db.dispose()
        if drop is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)'))
            admin.dispose()


def bench_config(db: Database, server: DovecotServer, user: str, workdir: Path) -> Config:
    """One mailbox on the plain listener, feeding the support queue, on db."""
    data = {
        "database": {"url": db.url},
        "listener": {"enabled": False},
        "outbound": {"transport": "maildir", "maildir": str(workdir / "sent")},
        "queue": [{"name": "support", "addresses": ["support@example.com"]}],
        "security": {"reply_secret": "bench-secret-0123456789"},
        "tickets": {"attachment_dir": str(workdir / "attachments")},
        "mailbox": [
            {
                "name": "bench",
                "host": "127.0.0.1",
                "port": server.imap_port,
                "security": "none",
                "username": user,
                "password": TMP_PASSWORD,
                "queue": "support",
            }
        ],
    }
    return config_mod.parse(data, {}, workdir)


def count(db: Database, table: type[SpoolItem] | type[Ticket]) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


# ------------------------------------------------------------------ memory
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Yield a dict that gets "peak_mb": the RSS high-water mark above the start, in MB."""
    out: dict[str, float] = {}
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so earlier phases
    # (the raw fetch, the APPENDs) do not count; else sample VmRSS.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        resettable = True
    except OSError:
        resettable = False
    base = _status_kb("VmRSS")
    sampled = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            sampled.append(_status_kb("VmRSS"))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        top = _status_kb("VmHWM") if resettable else max(sampled)
        out["peak_mb"] = (top - base) / 1024


# ------------------------------------------------------------------ phases
def raw_fetch_rate(server: DovecotServer, user: str, batch: int = 50) -> float:
    """imapclient alone: UID FETCH BODY.PEEK[] of the whole folder in batches, msg/s."""
    client = IMAPClient("127.0.0.1", server.imap_port, ssl=False, timeout=60)
    client.login(user, TMP_PASSWORD)
    try:
        client.select_folder("INBOX", readonly=True)
        began = time.perf_counter()
        uids = sorted(client.search(["ALL"]))
        got = 0
        for i in range(0, len(uids), batch):
            got += len(client.fetch(uids[i : i + batch], ["BODY.PEEK[]"]))
        elapsed = time.perf_counter() - began
    finally:
        client.logout()
    assert got == len(uids)
    return got / elapsed


def drain(
    cfg: Config, db: Database, server: DovecotServer, user: str, n: int
) -> tuple[float, float]:
    """poll_once() until all n are spooled and moved: (seconds, peak RSS MB)."""
    poller = MailboxPoller(cfg, cfg.mailbox[0], db, utcnow)
    with peak_rss() as mem:
        began = time.perf_counter()
        try:
            report = poller.poll_once()
        finally:
            poller.close()
        elapsed = time.perf_counter() - began
    assert report.stored == n == count(db, SpoolItem), (report, count(db, SpoolItem))
    assert server.uids(user) == [] and len(server.uids(user, "Processed")) == n
    return elapsed, mem["peak_mb"]


def end_to_end(cfg: Config, db: Database, n: int, timeout: float) -> float | None:
    """Poller and runner in threads (the daemon's wiring): seconds until n tickets exist."""
    try:
        from mailtix.runner import Runner
    except ImportError:
        return None
    runner = Runner(db, cfg, utcnow)
    poller = MailboxPoller(cfg, cfg.mailbox[0], db, utcnow, on_commit=runner.wake.set)
    stop = threading.Event()
    threads = [
        threading.Thread(target=runner.run, args=(stop,), daemon=True),
        threading.Thread(target=poller.run, args=(stop,), daemon=True),
    ]
    began = time.perf_counter()
    for t in threads:
        t.start()
    try:
        deadline = began + timeout
        while count(db, Ticket) < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {count(db, Ticket)} of {n} tickets after {timeout} s")
            time.sleep(0.1)
        return time.perf_counter() - began
    finally:
        stop.set()
        runner.wake.set()
        for t in threads:
            t.join()
        runner.close()


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=10_000, help="the large backlog")
    p.add_argument("--small", type=int, default=1_000, help="the small backlog (memory check)")
    p.add_argument("--size", type=int, default=4096, help="bytes per message")
    p.add_argument("--db-url", help="PostgreSQL admin URL (default: SQLite in a temp dir)")
    p.add_argument("--tickets", type=int, help="end-to-end backlog (default: --messages)")
    p.add_argument("--timeout", type=float, default=1800, help="end-to-end limit, seconds")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mailtix-bench-imap-"))
    server = start_server(Path(tempfile.mkdtemp(prefix="mtx-bench-dc-")))
    try:
        db_kind = "PostgreSQL" if args.db_url else "SQLite"
        print(f"Dovecot {server.imap_port}, {args.size}-byte messages, {db_kind}")
        # A first, unreported drain: imports and first-use allocations are not backlog.
        user, _ = fill(server, 200, args.size)
        with fresh_database(args.db_url, workdir) as db:
            drain(bench_config(db, server, user, workdir), db, server, user, 200)
        for n in (args.small, args.messages):
            user, append_rate = fill(server, n, args.size)
            raw = raw_fetch_rate(server, user)
            with fresh_database(args.db_url, workdir) as db:
                seconds, peak = drain(bench_config(db, server, user, workdir), db, server, user, n)
            rate = n / seconds
            print(
                f"{n:>7} waiting  APPEND {append_rate:5.0f} msg/s | raw UID FETCH BODY.PEEK[] "
                f"{raw:5.0f} msg/s | poller: all spooled+moved in {seconds:6.2f} s = "
                f"{rate:5.0f} msg/s ({rate / raw:4.0%} of raw), peak RSS +{peak:5.1f} MB"
            )
        n = args.tickets or args.messages
        user, _ = fill(server, n, args.size)
        with fresh_database(args.db_url, workdir) as db:
            seconds_e2e = end_to_end(bench_config(db, server, user, workdir), db, n, args.timeout)
        if seconds_e2e is None:
            print("end to end: mailtix.runner is not there yet")
        else:
            print(f"{n:>7} waiting  until every ticket exists: {seconds_e2e:.1f} s "
                  f"= {n / seconds_e2e:.0f} tickets/s (poller + runner threads)")  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
