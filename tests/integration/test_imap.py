"""IMAP mailboxes against a real Dovecot: store, commit, then move, and survive faults."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailtix.config import Config
from mailtix.inbound.imap import Backoff, LoginFailed, MailboxError, MailboxPoller
from mailtix.store import mailboxes, spool
from mailtix.store.db import Database
from mailtix.store.spool import Envelope
from mailtix.store.tables import SpoolItem
from tests.conftest import ConfigFactory
from tests.integration.dovecot import TMP_PASSWORD, DovecotServer, make_message

pytestmark = pytest.mark.dovecot

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FAST = Backoff(base=0.1, cap=1.0)


def mailbox(dovecot: DovecotServer, user: str, **over: Any) -> dict[str, Any]:
    """A [[mailbox]] section for user on the plain listener, feeding the support queue."""
    section = {
        "name": "support-imap",
        "host": "127.0.0.1",
        "port": dovecot.imap_port,
        "security": "none",
        "username": user,
        "password": TMP_PASSWORD,
        "queue": "support",
        "timeout": 10,
    }
    return section | over


def poller_for(cfg: Config, db: Database, index: int = 0, **kw: Any) -> MailboxPoller:
    return MailboxPoller(cfg, cfg.mailbox[index], db, lambda: NOW, backoff=FAST, **kw)


def spooled(db: Database) -> list[SpoolItem]:
    with db.read() as s:
        return list(s.scalars(select(SpoolItem).order_by(SpoolItem.id)))  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll condition every 20 ms until it holds or timeout seconds passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextmanager
def running(*pollers: MailboxPoller) -> Iterator[threading.Event]:
    """Run pollers in threads as the daemon does; stop and join them (also on failure)."""
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in pollers]
    for t in threads:
        t.start()
    try:
        yield stop
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        assert not any(t.is_alive() for t in threads), "a poller did not stop within 5 s"


# ------------------------------------------------------------------ the path
def test_waiting_mail_is_spooled_byte_for_byte_then_moved(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Every waiting message is stored exactly as the server holds it, then leaves INBOX."""
    sent = [make_message(n, size=3000) for n in range(3)]
    dovecot.append(imap_user, sent)
    dovecot.deliver(imap_user, make_message(3))  # via LMTP: gains Delivered-To
    cfg = make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user, batch_size=2)])
    poller = poller_for(cfg, db)
    try:
        report = poller.poll_once()
    finally:
        poller.close()
    assert (report.stored, report.duplicates, report.moved) == (4, 0, 4)
    assert dovecot.uids(imap_user) == []
    processed = dovecot.bodies(imap_user, "Processed")
    items = spooled(db)
    assert [i.raw for i in items] == processed and [i.raw for i in items[:3]] == sent
    assert {(i.source, i.queue) for i in items} == {("imap:support-imap", "support")}
    assert items[3].rcpt_to == f'["{imap_user}"]' and items[3].mail_from == "sender@example.org"
    with db.read() as s:
        state = mailboxes.get_state(s, "support-imap")
    assert state is not None and state.last_uid == 4


def test_fetching_does_not_mark_mail_seen(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """BODY.PEEK[] leaves \\Seen unset, so people still see the mail as unread."""
    dovecot.append(imap_user, [make_message(1)])
    cfg = make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user)])
    poller = poller_for(cfg, db)
    try:
        poller.poll_once()
    finally:
        poller.close()
    client = dovecot.connect(imap_user)
    try:
        client.select_folder("Processed", readonly=True)
        assert client.search(["SEEN"]) == [] and len(client.search(["ALL"])) == 1
    finally:
        client.logout()


def test_server_without_move_gets_copy_delete_expunge(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Without MOVE (RFC 6851) the mail is copied, flagged \\Deleted and UID EXPUNGEd."""
    dovecot.append(imap_user, [make_message(n) for n in range(3)])
    box = mailbox(dovecot, imap_user, host="127.0.0.2", port=dovecot.nomove_port)
    poller = poller_for(make_config(db_url=db_url, mailbox=[box]), db)
    try:
        report = poller.poll_once()
    finally:
        poller.close()
    assert (report.stored, report.moved) == (3, 3)
    assert dovecot.uids(imap_user) == [] and len(dovecot.uids(imap_user, "Processed")) == 3
    # Dovecot's own count for the session: 3 flagged \Deleted, 3 expunged (a MOVE counts 0).
    counted = "deleted=3 expunged=3"
    assert wait_until(lambda: any(counted in e for e in dovecot.sessions_ended(imap_user)), 2)


# ------------------------------------------------------- crash-safety, resync
def test_mail_committed_before_a_crash_is_moved_not_duplicated(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """A crash after the COMMIT, before the MOVE: the next run recognises the mail and moves it."""
    raw = make_message(1)
    dovecot.append(imap_user, [raw, make_message(2)])
    cfg = make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user)])
    # What the crashed poller left: message 1 committed, with its position.
    uidvalidity = _uidvalidity(dovecot, imap_user)
    with db.write() as s:
        spool.put_many(s, [(raw, Envelope("imap:support-imap", queue="support"))], NOW)
        mailboxes.set_state(s, "support-imap", uidvalidity, 1, NOW)
    poller = poller_for(cfg, db)
    try:
        report = poller.poll_once()
    finally:
        poller.close()
    assert (report.stored, report.duplicates, report.moved) == (1, 1, 2)
    assert len(spooled(db)) == 2
    assert dovecot.uids(imap_user) == [] and dovecot.bodies(imap_user, "Processed")[0] == raw


def test_a_move_that_fails_after_commit_is_finished_by_the_next_session(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """The MOVE fails (its folder vanished) after the COMMIT: reconnecting finishes it, once."""
    cfg = make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user)])
    poller = poller_for(cfg, db)
    try:
        poller.poll_once()  # connects and creates Processed
        admin = dovecot.connect(imap_user)
        admin.delete_folder("Processed")
        admin.logout()
        dovecot.append(imap_user, [make_message(1)])
        with pytest.raises(MailboxError, match="TRYCREATE"):
            poller.poll_once()
        assert len(spooled(db)) == 1 and len(dovecot.uids(imap_user)) == 1
        report = poller.poll_once()
    finally:
        poller.close()
    assert (report.stored, report.duplicates, report.moved) == (0, 1, 1)
    assert len(spooled(db)) == 1
    assert dovecot.uids(imap_user) == [] and len(dovecot.uids(imap_user, "Processed")) == 1


def test_changed_uidvalidity_resyncs_without_duplicates(
    dovecot: DovecotServer,
    imap_user: str,
    db: Database,
    db_url: str,
    make_config: ConfigFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After UIDVALIDITY changes, mail already stored is only moved; new mail is stored once."""
    old = [make_message(n) for n in range(2)]
    dovecot.append(imap_user, old)
    cfg = make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user)])
    poller = poller_for(cfg, db)
    try:
        poller.poll_once()
        # A restore puts the old mail back, then the index is rebuilt.
        dovecot.append(imap_user, [*old, make_message(9)])
        dovecot.set_uidvalidity(imap_user, 4242)
        with caplog.at_level(logging.WARNING, logger="mailtix.imap"):
            report = poller.poll_once()  # same session: SELECT reports the change
    finally:
        poller.close()
    assert report.resynced and (report.stored, report.duplicates, report.moved) == (1, 2, 3)
    assert len(spooled(db)) == 3 and dovecot.uids(imap_user) == []
    assert any("UIDVALIDITY" in r.getMessage() and "4242" in r.getMessage() for r in caplog.records)
    with db.read() as s:
        state = mailboxes.get_state(s, "support-imap")
    assert state is not None and state.uidvalidity == 4242 and state.last_uid == 5


def _uidvalidity(dovecot: DovecotServer, user: str) -> int:
    client = dovecot.connect(user)
    try:
        return int(client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
    finally:
        client.logout()


# ------------------------------------------------------------- push, restart
def test_new_mail_during_idle_is_stored_within_two_seconds(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Mail delivered while the poller IDLEs is in the spool and moved within 2 s."""
    cfg = make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user)])
    poller = poller_for(cfg, db)
    with running(poller):
        assert wait_until(lambda: poller.status == "idle", 5)
        began = time.monotonic()
        dovecot.deliver(imap_user, make_message(1))
        assert wait_until(lambda: len(spooled(db)) == 1, 2.0), "not stored within 2 s"
        elapsed = time.monotonic() - began
        assert wait_until(lambda: dovecot.uids(imap_user, "Processed") != [], 2.0)
    assert elapsed < 2.0 and dovecot.uids(imap_user) == []


def test_without_idle_the_folder_is_polled_at_the_interval(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """With idle = false, new mail is picked up by the next poll."""
    box = mailbox(dovecot, imap_user, idle=False, poll_interval=0.2)
    poller = poller_for(make_config(db_url=db_url, mailbox=[box]), db)
    with running(poller):
        assert wait_until(lambda: poller.status == "waiting", 5)
        dovecot.append(imap_user, [make_message(1)])
        assert wait_until(lambda: len(spooled(db)) == 1, 3)


def test_stop_ends_an_idling_poller_promptly(
    dovecot: DovecotServer, imap_user: str, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """stop.set() during IDLE: run() returns within a second and logs out."""
    poller = poller_for(make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user)]), db)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: poller.status == "idle", 5)
        began = time.monotonic()
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive() and time.monotonic() - began < 1.0
        assert poller.status == "stopped"
        assert wait_until(lambda: "Logged out" in "".join(dovecot.sessions_ended(imap_user)), 2)
    finally:
        stop.set()
        thread.join(timeout=5)


def test_server_restart_during_idle_reconnects_and_stores_new_mail(
    dovecot: DovecotServer,
    imap_user: str,
    db: Database,
    db_url: str,
    make_config: ConfigFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Dovecot restarts under an idling poller: it logs the loss, reconnects, stores new mail."""
    poller = poller_for(make_config(db_url=db_url, mailbox=[mailbox(dovecot, imap_user)]), db)
    with caplog.at_level(logging.INFO, logger="mailtix.imap"), running(poller):
        assert wait_until(lambda: poller.status == "idle", 5)
        dovecot.restart()

        def connects() -> int:
            return sum("connected as" in r.getMessage() for r in caplog.records)

        assert wait_until(lambda: connects() == 2 and poller.status == "idle", 10)
        dovecot.deliver(imap_user, make_message(1))
        assert wait_until(lambda: len(spooled(db)) == 1, 2), "not stored after the restart"
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures
    assert all("retrying in" in r.getMessage() and "\n" not in r.getMessage() for r in failures)


# ------------------------------------------------------------------ security
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_a_self_signed_certificate_given_as_ca_file(
    security: str,
    dovecot: DovecotServer,
    imap_user: str,
    db: Database,
    db_url: str,
    make_config: ConfigFactory,
) -> None:
    """STARTTLS and implicit TLS verify the server against ca_file, then mail flows."""
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    dovecot.append(imap_user, [make_message(1)])
    box = mailbox(dovecot, imap_user, security=security, port=port, ca_file=str(dovecot.cert))
    poller = poller_for(make_config(db_url=db_url, mailbox=[box]), db)
    try:
        assert poller.poll_once().stored == 1
    finally:
        poller.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_untrusted_certificate_is_refused(
    security: str,
    dovecot: DovecotServer,
    imap_user: str,
    db: Database,
    db_url: str,
    make_config: ConfigFactory,
) -> None:
    """Without the CA file the self-signed certificate fails verification: no login at all."""
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    box = mailbox(dovecot, imap_user, security=security, port=port)
    poller = poller_for(make_config(db_url=db_url, mailbox=[box]), db)
    try:
        with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
            poller.poll_once()
    finally:
        poller.close()


def test_wrong_password_is_one_clear_line_per_attempt_with_growing_backoff(
    dovecot: DovecotServer,
    imap_user: str,
    db: Database,
    db_url: str,
    make_config: ConfigFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused login is logged once per attempt, waits longer each time, never crashes."""
    box = mailbox(dovecot, imap_user, password="wrong")
    cfg = make_config(db_url=db_url, mailbox=[box])
    poller = MailboxPoller(cfg, cfg.mailbox[0], db, lambda: NOW, backoff=Backoff(0.2, 10))
    with pytest.raises(LoginFailed, match=f"login as {imap_user} on 127.0.0.1:"):
        poller.poll_once()

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "refused" in r.getMessage()]

    with caplog.at_level(logging.ERROR, logger="mailtix.imap"), running(poller):
        assert wait_until(lambda: len(refusals()) >= 3, 5)
        assert poller.status in ("backoff", "connecting")
    first, second, third = refusals()[:3]
    assert all(r.levelno == logging.ERROR and "retrying in" in r.getMessage() for r in refusals())
    assert "AUTHENTICATIONFAILED" in first.getMessage() and "\n" not in first.getMessage()
    # Equal jitter: the n-th wait is between half and all of 0.2 * 2**n seconds.
    assert second.created - first.created >= 0.1 and third.created - second.created >= 0.2


@pytest.mark.parametrize("source", ["env", "command"])
def test_xoauth2_token_from_env_or_refreshed_by_command(
    source: str,
    tmp_path: Path,
    dovecot: DovecotServer,
    imap_user: str,
    db: Database,
    db_url: str,
    make_config: ConfigFactory,
) -> None:
    """XOAUTH2 logs in with the env token; a command's refused token is refreshed once."""
    dovecot.append(imap_user, [make_message(1)])
    box = mailbox(dovecot, imap_user, password=None)
    if source == "env":
        box["oauth2_token_env"] = "MAILTIX_TEST_TOKEN"
    else:
        # The first token the command prints has "expired"; the second is good.
        calls = tmp_path / "calls"
        script = tmp_path / "token.sh"
        script.write_text(
            f'echo x >> {calls}\n[ "$(wc -l < {calls})" -gt 1 ] && echo {TMP_PASSWORD} '
            "|| echo expired-token\n"
        )
        box["oauth2_token_command"] = f"sh {script}"
    cfg = make_config(db_url=db_url, env={"MAILTIX_TEST_TOKEN": TMP_PASSWORD}, mailbox=[box])
    poller = poller_for(cfg, db)
    try:
        assert poller.poll_once().stored == 1
    finally:
        poller.close()
    if source == "command":
        assert (tmp_path / "calls").read_text().count("x") == 2


# ------------------------------------------------------------ several, limits
def test_two_mailboxes_feed_two_queues(
    dovecot: DovecotServer, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Two mailboxes, each in its own thread, store into their own queues."""
    support, billing = dovecot.new_user(), dovecot.new_user()
    boxes = [
        mailbox(dovecot, support),
        mailbox(dovecot, billing, name="billing-imap", queue="billing"),
    ]
    cfg = make_config(db_url=db_url, mailbox=boxes)
    pollers = [poller_for(cfg, db, 0), poller_for(cfg, db, 1)]
    with running(*pollers):
        dovecot.deliver(support, make_message(1, to="support@example.com"))
        dovecot.deliver(billing, make_message(2, to="billing@example.com"))
        dovecot.deliver(billing, make_message(3, to="billing@example.com"))
        assert wait_until(lambda: len(spooled(db)) == 3, 5)
    got = sorted((i.source, i.queue or "") for i in spooled(db))
    assert got == [
        ("imap:billing-imap", "billing"),
        ("imap:billing-imap", "billing"),
        ("imap:support-imap", "support"),
    ]


def test_a_failing_mailbox_does_not_stop_the_other(
    dovecot: DovecotServer, db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """One mailbox with a wrong password backs off; the other keeps storing mail."""
    good, bad = dovecot.new_user(), dovecot.new_user()
    boxes = [
        mailbox(dovecot, bad, name="bad-imap", password="wrong"),
        mailbox(dovecot, good, name="good-imap", queue="billing"),
    ]
    cfg = make_config(db_url=db_url, mailbox=boxes)
    with running(poller_for(cfg, db, 0), poller_for(cfg, db, 1)):
        dovecot.deliver(good, make_message(1))
        assert wait_until(lambda: len(spooled(db)) == 1, 5)
    assert spooled(db)[0].source == "imap:good-imap"


@pytest.mark.parametrize("oversize_folder", [None, "Oversize"])
def test_oversize_mail_is_set_aside_with_a_reason_once(
    oversize_folder: str | None,
    dovecot: DovecotServer,
    imap_user: str,
    db: Database,
    db_url: str,
    make_config: ConfigFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mail over max_message_bytes is never fetched: moved or left, logged once, not retried."""
    small, big = make_message(1), make_message(2, size=20_000)
    dovecot.append(imap_user, [big, small])
    box = mailbox(dovecot, imap_user, oversize_folder=oversize_folder)
    cfg = make_config(db_url=db_url, listener={"max_message_bytes": 10_000}, mailbox=[box])
    with caplog.at_level(logging.WARNING, logger="mailtix.imap"):
        poller = poller_for(cfg, db)
        try:
            first = poller.poll_once()
            poller.close()  # a new session sweeps from UID 1 again
            again = poller.poll_once()
        finally:
            poller.close()
    assert (first.stored, first.oversize) == (1, 1)
    assert [i.raw for i in spooled(db)] == [small]
    warnings = [r.getMessage() for r in caplog.records if "over the limit" in r.getMessage()]
    where = f"moved to {oversize_folder}" if oversize_folder else "left in place"
    assert len(warnings) == 1 and "10000" in warnings[0] and where in warnings[0]
    if oversize_folder:
        assert dovecot.bodies(imap_user, oversize_folder) == [big] and again.oversize == 0
    else:
        assert dovecot.bodies(imap_user) == [big] and again.oversize == 1
    assert again.stored == 0 and again.duplicates == 0
