"""The sender against a real SMTP smarthost the test starts: retries, failures, crashes, TLS."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from mailtix.config import Config
from mailtix.outbound.maildir import MaildirTransport
from mailtix.outbound.sender import Sender, backoff_seconds, lease_for, send_pending
from mailtix.outbound.smtp import SmtpTransport
from mailtix.outbound.transport import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    Transport,
    transport_for,
)
from mailtix.render.mime import Address, Headers, compose
from mailtix.services import notify
from mailtix.store import outbox, tickets
from mailtix.store.db import Database
from mailtix.store.tables import OutboxItem
from tests.conftest import ConfigFactory, need
from tests.integration.smarthost import HANG, Smarthost, self_signed_cert

# aiosmtpd's own deprecations, and its warning about AUTH over implicit TLS
# (which it does not count as TLS), are the sink's business, not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[Smarthost]:
    with Smarthost() as host:
        yield host


def _smtp_config(make_config: ConfigFactory, db_url: str, port: int, **outbound: Any) -> Config:
    section = {
        "transport": "smtp", "host": "127.0.0.1", "port": port, "timeout": 0.5,
        "retry_base_seconds": 10, "retry_max_seconds": 60, "max_attempts": 6, **outbound,
    }
    return make_config(db_url=db_url, outbound=section)


def _ticket(db: Database) -> int:
    with db.write() as s:
        t = tickets.create(s, subject="Printer", queue="support", requester="c@customer.org",
                           requester_name="C", now=T0)
        assert t.id is not None
        return t.id


def _enqueue(db: Database, n: int = 1, *, ticket_id: int | None = None, kind: str = "answer",
             to: str = "c@customer.org", envelope_from: str = "support@example.com") -> list[str]:
    ids = []
    with db.write() as s:
        for i in range(n):
            mid = f"<m{i}.{time.monotonic_ns()}@example.com>"
            raw = compose(
                Headers(from_=Address("support@example.com"), to=(Address(to),),
                        subject=f"message {i}", message_id=mid, date=T0),
                f"body {i}\n", f"<p>body {i}</p>",
            )
            outbox.enqueue(s, ticket_id=ticket_id, kind=kind, dedupe_key=mid, message_id=mid,
                           envelope_from=envelope_from, recipients=[to], raw=raw, now=T0)
            ids.append(mid)
    return ids


def _rows(db: Database) -> list[OutboxItem]:
    with db.read() as s:
        return list(s.exec(select(OutboxItem).order_by(OutboxItem.id)))  # type: ignore[arg-type]


def test_each_due_row_is_delivered_exactly_once(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """20 rows, 20 messages at the sink, each once; a second pass sends nothing."""
    cfg = _smtp_config(make_config, db_url, sink.port)
    ids = _enqueue(db, 20)
    transport = SmtpTransport(cfg.outbound)
    try:
        report = send_pending(db, cfg, transport, T0)
        again = send_pending(db, cfg, transport, T0 + timedelta(days=1))
    finally:
        transport.close()
    assert (report.sent, report.retried, report.failed) == (20, 0, 0) and again.total == 0
    assert sorted(r.message_id or "" for r in sink.received) == sorted(ids)
    assert {r.state for r in _rows(db)} == {"sent"}
    assert all(r.rcpt_tos == ("c@customer.org",) for r in sink.received)


def test_4xx_is_retried_with_capped_exponential_backoff(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """Five 451s: the waits are 10, 20, 40, 60, 60 s (jitter at its top); the sixth goes."""
    cfg = _smtp_config(make_config, db_url, sink.port)
    (mid,) = _enqueue(db)
    sink.script(*["451 4.3.0 try later"] * 5, message_id=mid)
    transport = SmtpTransport(cfg.outbound)
    now, waits = T0, []
    try:
        for _ in range(5):
            assert send_pending(db, cfg, transport, now, rng=lambda: 1.0).retried == 1
            (row,) = _rows(db)
            waits.append((row.next_attempt_at - now).total_seconds())
            # Not due a second early.
            assert send_pending(db, cfg, transport, row.next_attempt_at - timedelta(seconds=1)
                                ).total == 0
            now = row.next_attempt_at
        assert send_pending(db, cfg, transport, now).sent == 1
    finally:
        transport.close()
    assert waits == [10, 20, 40, 60, 60]
    assert sink.attempts == 6 and sink.count(mid) == 1
    (row,) = _rows(db)
    assert (row.state, row.attempts) == ("sent", 6)


def test_backoff_jitter_stays_between_half_and_full_delay() -> None:
    """Equal jitter: the delay is in [d/2, d] for d = base·2^(n-1) capped."""
    assert backoff_seconds(1, 30, 3600, lambda: 0.0) == 15
    assert backoff_seconds(3, 30, 3600, lambda: 1.0) == 120
    assert backoff_seconds(50, 30, 3600, lambda: 0.5) == 2700


def test_5xx_fails_at_once_records_an_event_and_tells_the_agents(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """550: the row fails, the ticket says why, and both support agents get a notice."""
    cfg = _smtp_config(make_config, db_url, sink.port)
    tid = _ticket(db)
    (mid,) = _enqueue(db, ticket_id=tid)
    sink.script("550 5.1.1 no such user", message_id=mid)
    transport = SmtpTransport(cfg.outbound)
    try:
        # The notices are due at once: the same pass delivers them.
        report = send_pending(db, cfg, transport, T0)
    finally:
        transport.close()
    assert (report.sent, report.failed) == (2, 1)
    rows = _rows(db)
    assert (rows[0].state, rows[0].attempts) == ("failed", 1)
    assert rows[0].last_error is not None and "550" in rows[0].last_error
    assert sorted(r.rcpt_tos[0] for r in sink.received) == ["alice@example.com", "bob@example.com"]
    assert all(r.kind == notify.FAILURE_KIND and r.state == "sent" for r in rows[1:])
    with db.read() as s:
        (event,) = [e for e in tickets.events(s, tid) if e.kind == "delivery-failed"]
    assert "no such user" in json.loads(event.detail)["error"]


def test_a_failed_failure_notice_starts_no_loop(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """Everything bounces: the first failure notifies, the notices' failures don't."""
    cfg = _smtp_config(make_config, db_url, sink.port)
    tid = _ticket(db)
    _enqueue(db, ticket_id=tid)
    sink.script(*["554 5.7.1 rejected"] * 10)
    transport = SmtpTransport(cfg.outbound)
    try:
        first = send_pending(db, cfg, transport, T0)
        second = send_pending(db, cfg, transport, T0 + timedelta(hours=1))
    finally:
        transport.close()
    assert (first.failed, second.total) == (3, 0)  # the row, then its two notices, in one pass
    assert [r.state for r in _rows(db)] == ["failed"] * 3
    with db.read() as s:
        assert sum(e.kind == "delivery-failed" for e in tickets.events(s, tid)) == 3


def test_too_many_temporary_failures_end_as_failed(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """After max_attempts 4xx the row fails, saying it gave up."""
    cfg = _smtp_config(make_config, db_url, sink.port, max_attempts=2)
    tid = _ticket(db)
    (mid,) = _enqueue(db, ticket_id=tid)
    sink.script("421 4.4.2 busy", "451 4.3.0 still busy", message_id=mid)
    transport = SmtpTransport(cfg.outbound)
    try:
        assert send_pending(db, cfg, transport, T0).retried == 1
        assert send_pending(db, cfg, transport, T0 + timedelta(hours=1)).failed == 1
    finally:
        transport.close()
    row = _rows(db)[0]
    assert row.state == "failed" and (row.last_error or "").startswith("gave up after 2 attempts")


def test_a_hanging_server_times_out_and_the_row_is_retried(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """No answer to DATA within the timeout is a temporary failure; the retry goes through."""
    cfg = _smtp_config(make_config, db_url, sink.port, timeout=0.3)
    (mid,) = _enqueue(db)
    sink.script(HANG, message_id=mid)
    transport = SmtpTransport(cfg.outbound)
    try:
        started = time.monotonic()
        report = send_pending(db, cfg, transport, T0)
        took = time.monotonic() - started
        (row,) = _rows(db)
        assert report.retried == 1 and "timed out" in (row.last_error or "")
        assert send_pending(db, cfg, transport, row.next_attempt_at).sent == 1
    finally:
        transport.close()
    assert took < 5
    assert sink.count(mid) == 1


def test_connection_refused_is_temporary(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """Nobody listening: retried later, never failed."""
    port = sink.port
    sink.stop()
    cfg = _smtp_config(make_config, db_url, port)
    _enqueue(db)
    assert send_pending(db, cfg, SmtpTransport(cfg.outbound), T0).retried == 1
    assert "ConnectionRefusedError" in (_rows(db)[0].last_error or "")


class Crash(BaseException):
    """Stands for the process being killed: nothing after it runs."""


class CrashAfterDelivery:
    """A transport that delivers once, then "kills" the sender before it can mark the row."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.dead = False

    def send(self, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        if not self.dead:  # a dead process delivers nothing more
            self.inner.send(envelope_from, recipients, raw)
            self.dead = True
        raise Crash


def test_a_crash_between_delivery_and_mark_resends_at_most_once_more(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """Killed after the 250: nothing moves until the lease ends, then that row goes once more.

    This is the documented at-least-once guarantee: the repeat carries the
    same Message-ID, and rows never delivered are sent exactly once.
    """
    cfg = _smtp_config(make_config, db_url, sink.port)
    ids = _enqueue(db, 3)
    transport = SmtpTransport(cfg.outbound)
    try:
        with pytest.raises(Crash):
            send_pending(db, cfg, CrashAfterDelivery(transport), T0)
        assert sink.count(ids[0]) == 1
        # "Restart": the claimed rows are leased, so nothing is sent twice at once.
        assert send_pending(db, cfg, transport, T0 + timedelta(seconds=1)).total == 0
        lease_end = T0 + lease_for(cfg)
        assert send_pending(db, cfg, transport, lease_end).sent == 3
        assert send_pending(db, cfg, transport, lease_end + timedelta(days=1)).total == 0
    finally:
        transport.close()
    assert [sink.count(m) for m in ids] == [2, 1, 1]
    assert {r.state for r in _rows(db)} == {"sent"}


def test_four_connections_deliver_every_row_once(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """With a pool of 4 SMTP connections, 60 rows arrive once each."""
    cfg = _smtp_config(make_config, db_url, sink.port, connections=4)
    ids = _enqueue(db, 60)
    transport = SmtpTransport(cfg.outbound)
    try:
        assert send_pending(db, cfg, transport, T0).sent == 60
    finally:
        transport.close()
    assert sorted(r.message_id or "" for r in sink.received) == sorted(ids)


def test_the_daemon_sender_delivers_when_woken_and_stops_promptly(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """Sender.run delivers what is enqueued after wake(), and returns soon after stop.set()."""
    cfg = _smtp_config(make_config, db_url, sink.port)
    transport = SmtpTransport(cfg.outbound)
    sender = Sender(db, cfg, transport, lambda: T0, poll_interval=60)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,))
    thread.start()
    try:
        ids = _enqueue(db, 2)
        sender.wake()
        assert sink.wait_for(2, timeout=10)
    finally:
        stopped_at = time.monotonic()
        stop.set()
        thread.join(10)
        transport.close()
    assert not thread.is_alive() and time.monotonic() - stopped_at < 2
    assert sorted(r.message_id or "" for r in sink.received) == sorted(ids)


def test_verp_envelope_sender_names_the_row(
    db: Database, db_url: str, make_config: ConfigFactory, sink: Smarthost
) -> None:
    """envelope_sender "bounces+{token}@…" reaches the smarthost as MAIL FROM per row."""
    cfg = _smtp_config(make_config, db_url, sink.port)
    _enqueue(db, envelope_from="bounces+{token}@example.com")
    transport = SmtpTransport(cfg.outbound)
    try:
        send_pending(db, cfg, transport, T0)
    finally:
        transport.close()
    (row,) = _rows(db)
    (got,) = sink.received
    assert got.mail_from == f"bounces+o{row.id}@example.com"
    assert outbox.item_id_from_bounce_address(got.mail_from, "bounces+{token}@example.com") == (
        row.id
    )


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    need(shutil.which("openssl") is not None, "openssl is needed to make a test certificate")
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_auth(
    db: Database, db_url: str, make_config: ConfigFactory, cert: tuple[Path, Path], security: str
) -> None:
    """STARTTLS (RFC 3207) or implicit TLS (RFC 8314), then AUTH with the configured password."""
    tls = {"starttls": cert} if security == "starttls" else {"implicit_tls": cert}
    with Smarthost(users={"mailtix": "s3cret"}, **tls) as host:  # type: ignore[arg-type]
        cfg = _smtp_config(make_config, db_url, host.port, security=security, ca_file=str(cert[0]),
                           username="mailtix", password="s3cret", timeout=5)
        _enqueue(db)
        transport = transport_for(cfg)
        assert isinstance(transport, SmtpTransport)
        try:
            assert send_pending(db, cfg, transport, T0).sent == 1
        finally:
            transport.close()
        assert [r.login for r in host.received] == ["mailtix"]


def test_a_wrong_password_is_temporary(
    db: Database, db_url: str, make_config: ConfigFactory, cert: tuple[Path, Path]
) -> None:
    """535 at AUTH is our configuration, not the message: retry, don't fail the mail."""
    with Smarthost(users={"mailtix": "s3cret"}, starttls=cert) as host:
        cfg = _smtp_config(make_config, db_url, host.port, security="starttls",
                           ca_file=str(cert[0]), username="mailtix", password="wrong", timeout=5)
        transport = SmtpTransport(cfg.outbound, "wrong")
        with pytest.raises(TemporaryDeliveryError, match="authentication failed"):
            transport.send("support@example.com", ["c@customer.org"], b"Subject: x\r\n\r\nx\r\n")
        transport.close()


def test_permanent_and_temporary_rcpt_refusals(sink: Smarthost, make_config: ConfigFactory) -> None:
    """The transport maps reply codes to the two error families (RFC 5321 §4.2.1)."""
    cfg = make_config(outbound={"transport": "smtp", "host": "127.0.0.1", "port": sink.port})
    transport = SmtpTransport(cfg.outbound)
    sink.script("552 5.3.4 too big", "452 4.3.1 out of space")
    try:
        with pytest.raises(PermanentDeliveryError) as perm:
            transport.send("a@example.com", ["b@x.org"], b"Subject: x\r\n\r\nx\r\n")
        with pytest.raises(TemporaryDeliveryError) as temp:
            transport.send("a@example.com", ["b@x.org"], b"Subject: x\r\n\r\nx\r\n")
        transport.send("a@example.com", ["b@x.org"], b"Subject: x\r\n\r\nx\r\n")
    finally:
        transport.close()
    assert (perm.value.code, temp.value.code) == (552, 452)
    assert len(sink.received) == 1


def test_maildir_files_each_message_atomically_under_unique_names(tmp_path: Path) -> None:
    """4 threads x 25 messages: 100 files in new/, none left in tmp/, envelope on top."""
    transport = MaildirTransport(tmp_path / "sent")

    def work(n: int) -> None:
        for i in range(25):
            transport.send("support@example.com", [f"c{n}@x.org"],
                           f"Subject: {n}-{i}\r\n\r\nbody\r\n".encode())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    files = list((tmp_path / "sent" / "new").iterdir())
    assert len(files) == 100 and not list((tmp_path / "sent" / "tmp").iterdir())
    head = files[0].read_bytes()
    assert head.startswith(b"Return-Path: <support@example.com>\nX-Original-To: c")
    assert b"\r\n" not in head


@pytest.mark.parametrize("smtputf8", [True, False])
def test_a_non_ascii_mailbox_needs_smtputf8(make_config: ConfigFactory, smtputf8: bool) -> None:
    """With SMTPUTF8 (RFC 6531) it is delivered; without, it can never be: permanent."""
    raw = compose(Headers(from_=Address("support@example.com"), to=(Address("jörg@exämple.de"),),
                          subject="x", message_id="<u@example.com>", date=T0), "x\n")
    with Smarthost(smtputf8=smtputf8) as host:
        cfg = make_config(outbound={"transport": "smtp", "host": "127.0.0.1", "port": host.port})
        transport = SmtpTransport(cfg.outbound)
        try:
            if smtputf8:
                transport.send("support@example.com", ["jörg@exämple.de"], raw)
            else:
                with pytest.raises(PermanentDeliveryError, match="SMTPUTF8"):
                    transport.send("support@example.com", ["jörg@exämple.de"], raw)
        finally:
            transport.close()
        assert [r.rcpt_tos for r in host.received] == ([("jörg@xn--exmple-cua.de",)] if smtputf8
                                                       else [])
