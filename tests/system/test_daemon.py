"""The `mailtix` command end to end: daemon, SIGTERM, SIGKILL mid-load, inject exit codes."""

from __future__ import annotations

import smtplib
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from mailtix.store import spool
from mailtix.store.db import Database
from tests.system.conftest import DaemonProcess, cli, cli_json, wait_for, write_config


def customer_mail(n: int, subject: str = "Help") -> bytes:
    m = EmailMessage()
    m["From"] = f"customer{n}@example.org"
    m["To"] = "support@example.com"
    m["Subject"] = f"{subject} {n}"
    m["Message-ID"] = f"<load-{n}@example.org>"
    m.set_content(f"Message number {n}.\n" + ("x" * 70 + "\n") * 20)
    return m.as_bytes(policy=SMTP)


def test_tour_mail_becomes_ticket_and_daemon_stops_on_sigterm(
    tmp_path: Path, db_url: str, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """A mail sent to the listener shows up in `tickets` and `show`; SIGTERM exits 0."""
    config = write_config(tmp_path, db_url)
    daemon = daemon_factory(config)
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as smtp:
        smtp.sendmail("carol@customer.org", ["support@example.com"], customer_mail(1, "Printer"))
    rows = wait_for(lambda: cli_json(config, "tickets"), what="the ticket")
    assert [(r["subject"], r["requester"], r["status"]) for r in rows] == [
        ("Printer 1", "customer1@example.org", "new")
    ]
    shown = cli_json(config, "show", str(rows[0]["id"]))
    assert shown["messages"][0]["message_id"] == "<load-1@example.org>"
    assert shown["messages"][0]["direction"] == "in"
    assert daemon.terminate() == 0
    assert "stopped" in daemon.output()


def test_sigkill_mid_load_loses_and_doubles_nothing(
    tmp_path: Path, db_url: str, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """Every message that got a 250 before a SIGKILL is in exactly one ticket after restart."""
    config = write_config(tmp_path, db_url)
    daemon = daemon_factory(config)
    accepted: list[int] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(first: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as smtp:
                for n in range(first, first + 1000, 1):
                    if killed.is_set():
                        return
                    smtp.sendmail("x@example.org", ["support@example.com"], customer_mail(n))
                    with lock:
                        accepted.append(n)
        except (OSError, smtplib.SMTPException):
            return  # the daemon died under us: whatever got no 250 may be lost

    threads = [threading.Thread(target=client, args=(i * 1000,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(accepted) >= 150, what="150 accepted messages")
    daemon.kill()
    killed.set()
    for t in threads:
        t.join(timeout=30)
    got_250 = set(accepted)
    restarted = daemon_factory(config)

    def numbers() -> list[int]:
        return [int(str(r["subject"]).split()[-1]) for r in cli_json(config, "tickets")]

    wait_for(
        lambda: got_250 <= set(numbers()),
        timeout=120,
        what="every message that got a 250 to be in a ticket",
    )
    db = Database(db_url)
    try:

        def drained() -> bool:
            with db.read() as s:
                return spool.counts(s).get("new", 0) == 0

        wait_for(drained, timeout=60, what="the spool to drain")
    finally:
        db.dispose()
    final = numbers()
    assert len(final) == len(set(final)), "a message became two tickets"
    assert cli_json(config, "quarantine", "list") == []
    assert restarted.terminate() == 0


def test_inject_exit_codes(tmp_path: Path, db_url: str) -> None:
    """inject: 0 stored (a duplicate too), 65 not mail, 75 unknown queue or database busy."""
    config = write_config(tmp_path, db_url, busy_timeout="0.3")
    # No `db upgrade` first: on a fresh install inject creates the schema.
    ok = cli(config, "inject", stdin=customer_mail(7))
    assert ok.returncode == 0, ok.stderr
    again = cli(config, "inject", stdin=customer_mail(7))
    assert again.returncode == 0 and b"duplicate" in again.stderr
    notmail = cli(config, "inject", stdin=b"")
    assert notmail.returncode == 65 and notmail.stderr.count(b"\n") == 1
    unknown_queue = cli(config, "inject", "--queue", "nope", stdin=customer_mail(8))
    assert unknown_queue.returncode == 75  # the MTA keeps it until the config is fixed
    if db_url.startswith("sqlite"):  # PostgreSQL's case: test_inject_tempfail_when_...
        locker = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            locker.execute("BEGIN EXCLUSIVE")
            busy = cli(config, "inject", stdin=customer_mail(9))
        finally:
            locker.rollback()
            locker.close()
        assert busy.returncode == 75, busy.stderr
        assert b"Traceback" not in busy.stderr
    assert cli_json(config, "quarantine", "list") == []


def test_inject_tempfail_when_database_is_unreachable(tmp_path: Path) -> None:
    """inject exits 75 when the PostgreSQL server cannot be reached (nothing written)."""
    config = write_config(
        tmp_path, "postgresql+psycopg://mailtix:mailtix@127.0.0.1:1/nowhere?connect_timeout=2"
    )
    done = cli(config, "inject", stdin=customer_mail(1))
    assert done.returncode == 75
    assert done.stderr.decode().startswith("mailtix: database unavailable")


def test_check_config_lists_every_problem(tmp_path: Path) -> None:
    """check-config prints each problem with its key path and exits non-zero."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[listener]\nport = "x"\ncolour = 1\n[[queue]]\nname = "q"\naddresses = []\n')
    done = cli(bad, "check-config")
    err = done.stderr.decode()
    assert done.returncode == 78
    assert "listener.port" in err and "listener.colour" in err and "queue[0].addresses" in err
    good = cli(Path(__file__).resolve().parents[2] / "mailtix.toml", "check-config")
    assert good.returncode == 0 and good.stdout.startswith(b"ok:")


def test_sigterm_with_a_backlog_stops_between_transactions(
    tmp_path: Path, db_url: str, daemon_factory: Callable[[Path], DaemonProcess]
) -> None:
    """A long spool backlog does not hold up SIGTERM: the runner stops between batches."""
    config = write_config(tmp_path, db_url)
    db = Database(db_url)
    try:
        db.upgrade()
        with db.write() as s:
            spool.put_many(
                s,
                [(customer_mail(n), spool.Envelope(source="import")) for n in range(3000)],
                datetime.now(UTC),
            )
    finally:
        db.dispose()
    daemon = daemon_factory(config)
    wait_for(lambda: len(cli_json(config, "tickets")) > 0, what="the runner to start")
    started = time.monotonic()
    assert daemon.terminate(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert "did not stop" not in daemon.output()
