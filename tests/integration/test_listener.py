"""The SMTP/LMTP listener over real sockets: store, commit, then reply (SPEC §5)."""

from __future__ import annotations

import json
import logging
import os
import signal
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from mailtix.errors import StoreUnavailable, TemporaryError
from mailtix.inbound.groupcommit import GroupCommitter
from mailtix.inbound.listener import Listener
from mailtix.inbound.storeproc import StoreProcess
from mailtix.store.db import Database
from mailtix.store.spool import Envelope
from tests.conftest import ConfigFactory
from tests.integration.smtp_helpers import (
    NOW,
    LineClient,
    message,
    running,
    self_signed,
    spooled,
    swaks,
    unavailable,
    wait_until,
)

# 8-bit text, a line that needs dot-stuffing, and trailing white space.
TRICKY = message(
    7,
    body=b"Caf\xc3\xa9 ol\xe9\r\n.leading dot\r\n..two dots\r\ntrailing  \r\n\r\n",
    extra=b"X-Folded: one\r\n two\r\n",
)


def test_swaks_message_is_stored_byte_for_byte(
    db: Database, db_url: str, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """A message sent by swaks gets 250 and its bytes are spooled exactly, with its envelope."""
    eml = tmp_path / "msg.eml"
    eml.write_bytes(TRICKY.removesuffix(b"\r\n"))  # swaks adds CRLF before the final dot
    with running(make_config(db_url=db_url), db, child_process=True) as srv:
        result = swaks(
            srv.port,
            "--from",
            "carol@customer.org",
            "--to",
            "support@example.com",
            "--data",
            f"@{eml}",
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    (item,) = spooled(db)
    assert item.raw == TRICKY
    assert (item.source, item.mail_from, item.queue) == ("smtp", "carol@customer.org", "support")
    assert json.loads(item.rcpt_to) == ["support@example.com"]


def test_smtplib_message_is_stored_once_even_when_sent_twice(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """smtplib gets 250 twice for the same message (an MTA retry); the spool holds it once."""
    with (
        running(make_config(db_url=db_url), db) as srv,
        smtplib.SMTP(srv.host, srv.port, timeout=10) as c,
    ):
        c.sendmail("carol@customer.org", ["support@example.com"], TRICKY)
        code, _ = c.noop()
        c.sendmail("carol@customer.org", ["support@example.com"], TRICKY)
    assert code == 250
    (item,) = spooled(db)
    assert item.raw == TRICKY


def test_null_sender_is_accepted_and_spooled_as_empty(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """A bounce (MAIL FROM:<>) is accepted; the spool records the null sender as ""."""
    with (
        running(make_config(db_url=db_url), db) as srv,
        smtplib.SMTP(srv.host, srv.port, timeout=10) as c,
    ):
        c.sendmail("<>", ["support@example.com"], message(1))
    (item,) = spooled(db)
    assert item.mail_from == ""


def test_foreign_recipient_is_refused_with_550_and_nothing_relayed(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """RCPT to an address of no queue gets 550 5.1.1 (swaks exit 24); nothing is stored."""
    with running(make_config(db_url=db_url), db) as srv:
        result = swaks(srv.port, "--to", "victim@elsewhere.org")
    assert result.returncode == 24, result.stdout
    assert "550 5.1.1" in result.stdout
    assert spooled(db) == []


def test_mixed_recipients_keep_only_ours(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Of several recipients only our queues' are accepted and recorded in the envelope."""
    rcpts = ["victim@elsewhere.org", "billing@example.com", "support@example.com"]
    with (
        running(make_config(db_url=db_url), db) as srv,
        smtplib.SMTP(srv.host, srv.port, timeout=10) as c,
    ):
        refused = c.sendmail("carol@customer.org", rcpts, message(1))
    assert refused == {"victim@elsewhere.org": (550, b"5.1.1 Recipient address rejected: not ours")}
    (item,) = spooled(db)
    assert json.loads(item.rcpt_to) == ["billing@example.com", "support@example.com"]
    assert item.queue == "billing"


def test_plus_addressed_recipient_is_accepted(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """support+anything@ belongs to the support queue."""
    with running(make_config(db_url=db_url), db) as srv:
        result = swaks(srv.port, "--to", "Support+Ticket-42.abc@Example.com")
    assert result.returncode == 0, result.stdout
    (item,) = spooled(db)
    assert item.queue == "support"


def test_declared_size_over_limit_is_refused_at_mail(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """EHLO advertises SIZE; MAIL FROM with a larger SIZE= gets 552 5.3.4."""
    cfg = make_config(db_url=db_url, listener={"max_message_bytes": 4000})
    with running(cfg, db) as srv, LineClient(srv.host, srv.port) as c:
        c.reply()
        c.send(b"EHLO test\r\n")
        assert "250-SIZE 4000" in c.reply()
        c.send(b"MAIL FROM:<carol@customer.org> SIZE=4001\r\n")
        assert c.reply()[0].startswith("552 5.3.4")
    assert spooled(db) == []


def test_actual_data_over_limit_is_refused(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Data larger than max_message_bytes, not declared, gets 552 5.3.4 after DATA."""
    cfg = make_config(db_url=db_url, listener={"max_message_bytes": 4000})
    fits = message(1, body=(b"x" * 70 + b"\r\n") * 20)
    huge = message(2, body=(b"y" * 70 + b"\r\n") * 100)
    with running(cfg, db) as srv, smtplib.SMTP(srv.host, srv.port, timeout=10) as c:
        c.ehlo("test")
        c.mail("carol@customer.org")  # no SIZE= declared
        c.rcpt("support@example.com")
        code, reply = c.data(huge)
        c.sendmail("carol@customer.org", ["support@example.com"], fits)  # the session goes on
    assert code == 552 and reply.startswith(b"5.3.4")
    assert [i.raw for i in spooled(db)] == [fits]


@pytest.mark.parametrize("child_process", [False, True], ids=["thread", "child"])
def test_database_unavailable_gives_451_and_stores_nothing(
    db_url: str, make_config: ConfigFactory, tmp_path: Path, child_process: bool
) -> None:
    """With the database down the sender gets 451 4.3.0, nothing is half-stored, a retry works."""
    eml = tmp_path / "msg.eml"
    eml.write_bytes(message(3).removesuffix(b"\r\n"))
    db = Database(db_url, busy_timeout=0.2)
    try:
        with running(make_config(db_url=db_url), db, child_process=child_process) as srv:
            with unavailable(db_url):
                down = swaks(srv.port, "--to", "support@example.com", "--data", f"@{eml}")
            assert spooled(db) == []
            back = swaks(srv.port, "--to", "support@example.com", "--data", f"@{eml}")
        assert down.returncode == 26, down.stdout  # 26: refused after the final dot
        assert "451 4.3.0" in down.stdout
        assert back.returncode == 0, back.stdout
        assert [i.raw for i in spooled(db)] == [message(3)]
    finally:
        db.dispose()


def test_unexpected_error_is_451_and_logged_not_echoed(
    db: Database, db_url: str, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while storing is a 451 4.3.0 with the traceback in the log, not a 500 echoing it."""

    def broken_clock() -> datetime:
        raise RuntimeError("secret internal detail")

    committer = GroupCommitter(db, broken_clock, child_process=False)
    committer.start()
    listener = Listener(make_config(db_url=db_url), committer)
    host, port = listener.start()
    try:
        with caplog.at_level(logging.ERROR), smtplib.SMTP(host, port, timeout=10) as c:
            c.ehlo("test")
            c.mail("carol@customer.org")
            c.rcpt("support@example.com")
            code, reply = c.data(message(1))
    finally:
        listener.stop()
        committer.stop()
    assert code == 451 and reply.startswith(b"4.3.0")
    assert b"secret" not in reply
    assert any(
        r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records
    )
    assert spooled(db) == []


def test_lmtp_replies_once_per_accepted_recipient(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """LMTP (RFC 2033 §4.2): after DATA, one reply per accepted recipient, none if refused."""
    cfg = make_config(db_url=db_url, listener={"protocol": "lmtp"})
    with running(cfg, db) as srv, LineClient(srv.host, srv.port) as c:
        assert c.reply()[0].startswith("220")
        c.send(b"LHLO mta.example.net\r\n")
        assert "250-PIPELINING" in c.reply()
        c.send(
            b"MAIL FROM:<carol@customer.org>\r\n"
            b"RCPT TO:<support@example.com>\r\n"
            b"RCPT TO:<victim@elsewhere.org>\r\n"
            b"RCPT TO:<billing+x@example.com>\r\n"
            b"DATA\r\n"
        )
        codes = [c.reply()[0][:9] for _ in range(5)]
        c.send(message(1) + b".\r\n")
        per_rcpt = [c.reply() for _ in range(2)]
        c.send(b"QUIT\r\n")
        assert c.reply()[0].startswith("221")
    assert codes == ["250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 End d"]
    assert all(r[0].startswith("250 2.0.0 Ok: queued as") for r in per_rcpt)
    (item,) = spooled(db)
    assert item.source == "lmtp"
    assert json.loads(item.rcpt_to) == ["support@example.com", "billing+x@example.com"]


def test_lmtp_with_swaks(db: Database, db_url: str, make_config: ConfigFactory) -> None:
    """swaks --protocol LMTP delivers to two recipients and sees two 250 replies."""
    cfg = make_config(db_url=db_url, listener={"protocol": "lmtp"})
    with running(cfg, db) as srv:
        result = swaks(
            srv.port, "--protocol", "LMTP", "--to", "support@example.com,billing@example.com"
        )
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("250 2.0.0 Ok: queued as") == 2
    assert len(spooled(db)) == 1


def test_pipelined_transaction_gets_every_reply_in_order(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """With PIPELINING advertised, commands sent in one write get replies in order (RFC 2920)."""
    with running(make_config(db_url=db_url), db) as srv, LineClient(srv.host, srv.port) as c:
        c.reply()
        c.send(b"EHLO test\r\n")
        assert "250-PIPELINING" in c.reply()
        c.send(
            b"MAIL FROM:<carol@customer.org>\r\nRCPT TO:<victim@elsewhere.org>\r\n"
            b"RCPT TO:<support@example.com>\r\nDATA\r\n"
        )
        codes = [c.reply()[0][:3] for _ in range(4)]
        # The message, its end and the next transaction in one write too.
        c.send(
            message(1)
            + b".\r\nRSET\r\nMAIL FROM:<dan@customer.org>\r\nRCPT TO:<support@example.com>\r\n"
            b"DATA\r\n"
        )
        more = [c.reply()[0][:3] for _ in range(5)]
        c.send(message(2) + b".\r\nQUIT\r\n")
        last = [c.reply()[0][:3] for _ in range(2)]
    assert codes == ["250", "550", "250", "354"]
    assert more == ["250", "250", "250", "250", "354"]
    assert last == ["250", "221"]
    assert [i.raw for i in spooled(db)] == [message(1), message(2)]


def test_starttls_with_a_self_signed_certificate(
    db: Database, db_url: str, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """With tls_cert/tls_key set, STARTTLS is offered and swaks --tls delivers over it."""
    cert, key = self_signed(tmp_path)
    cfg = make_config(db_url=db_url, listener={"tls_cert": str(cert), "tls_key": str(key)})
    with running(cfg, db) as srv:
        result = swaks(srv.port, "--tls", "--to", "support@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STARTTLS" in result.stdout
    assert len(spooled(db)) == 1


def test_require_tls_refuses_mail_before_starttls(
    db: Database, db_url: str, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """With require_tls, a plain-text MAIL is refused (swaks exit 23); after STARTTLS it works."""
    cert, key = self_signed(tmp_path)
    cfg = make_config(
        db_url=db_url, listener={"tls_cert": str(cert), "tls_key": str(key), "require_tls": True}
    )
    with running(cfg, db) as srv:
        plain = swaks(srv.port, "--to", "support@example.com")
        tls = swaks(srv.port, "--tls", "--to", "support@example.com")
    assert plain.returncode == 23, plain.stdout
    assert "530" in plain.stdout
    assert tls.returncode == 0, tls.stdout + tls.stderr
    assert len(spooled(db)) == 1


def test_concurrent_sessions_store_every_message_exactly_once(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Eight sessions sending 25 messages each: 200 replies of 250, 200 distinct items."""

    def session(first: int, host: str, port: int) -> int:
        with smtplib.SMTP(host, port, timeout=30) as c:
            for n in range(first, first + 25):
                c.sendmail("carol@customer.org", ["support@example.com"], message(n))
        return 25

    with (
        running(make_config(db_url=db_url), db, child_process=True) as srv,
        ThreadPoolExecutor(8) as pool,
    ):
        sent = sum(pool.map(session, range(0, 200, 25), [srv.host] * 8, [srv.port] * 8))
        batches = srv.committer.batches
    items = spooled(db)
    assert sent == 200
    assert sorted(i.message_id or "" for i in items) == sorted(
        f"<msg-{n}@customer.org>" for n in range(200)
    )
    assert batches <= 200


def test_stop_lets_a_session_in_data_finish(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """stop() lets a message in DATA be stored and acknowledged; then the session gets 421."""
    committer = GroupCommitter(db, lambda: NOW, child_process=False)
    committer.start()
    listener = Listener(make_config(db_url=db_url), committer)
    host, port = listener.start()
    stopper = threading.Thread(target=listener.stop)
    try:
        with LineClient(host, port) as c:
            c.reply()
            c.send(
                b"EHLO test\r\nMAIL FROM:<carol@customer.org>\r\n"
                b"RCPT TO:<support@example.com>\r\nDATA\r\n"
            )
            assert [c.reply()[-1][:3] for _ in range(4)] == ["250", "250", "250", "354"]
            c.send(message(1))
            stopper.start()
            wait_until(lambda: listener.closing)
            c.send(b".\r\n")
            acknowledged = c.reply()
            goodbye = c.reply()
        stopper.join(timeout=10)
        assert not stopper.is_alive()
    finally:
        if not stopper.is_alive():
            listener.stop()
        committer.stop()
    assert acknowledged[0].startswith("250 2.0.0")
    assert goodbye[0].startswith("421")
    assert [i.raw for i in spooled(db)] == [message(1)]


def test_stop_closes_idle_sessions_promptly(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """An idle session does not hold up stop(): it gets 421 and the port stops accepting."""
    with running(make_config(db_url=db_url), db) as srv, LineClient(srv.host, srv.port) as c:
        c.reply()
        c.send(b"EHLO test\r\n")
        c.reply()
        started = time.monotonic()
        srv.listener.stop()
        elapsed = time.monotonic() - started
        goodbye = c.reply()
        with pytest.raises(OSError):
            LineClient(srv.host, srv.port).close()
    assert elapsed < 2.0
    assert goodbye[0].startswith("421 4.3.2")


# ------------------------------------------------------- the group committer
def test_committer_stop_drains_what_was_submitted(db: Database) -> None:
    """stop() stores everything submitted before it; later submissions fail as temporary."""
    commits: list[int] = []
    committer = GroupCommitter(
        db, lambda: NOW, child_process=False, on_commit=lambda: commits.append(1)
    )
    committer.start()
    futures = [committer.submit(message(n), Envelope(source="smtp")) for n in range(300)]
    committer.stop()
    late = committer.submit(message(999), Envelope(source="smtp"))
    assert all(f.done() and not f.result().duplicate for f in futures)
    assert len(commits) == committer.batches and 1 <= committer.batches <= 300
    with pytest.raises(TemporaryError):
        late.result()
    assert len(spooled(db)) == 300


def test_store_process_death_is_temporary_and_a_new_one_takes_over(db: Database) -> None:
    """If the store child is killed, that batch gets StoreUnavailable; the next one is stored."""
    store = StoreProcess(db)
    try:
        env = Envelope(source="smtp")
        (first,) = store.put_many([(message(1), env)], NOW)
        pid = store.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(StoreUnavailable):
            store.put_many([(message(2), env)], NOW)
        (third,) = store.put_many([(message(3), env)], NOW)
        assert store.pid not in (None, pid)
    finally:
        store.close()
    assert not first.duplicate and not third.duplicate
    assert [i.raw for i in spooled(db)] == [message(1), message(3)]


def test_wait_idle_reports_when_nothing_is_left_to_commit(db: Database) -> None:
    """wait_idle is False while a batch is being committed and True once it is done."""
    release = threading.Event()

    def slow_clock() -> datetime:
        release.wait(10)
        return NOW

    committer = GroupCommitter(db, slow_clock, child_process=False)
    committer.start()
    try:
        assert committer.wait_idle(0)
        future = committer.submit(message(1), Envelope(source="smtp"))
        assert not committer.wait_idle(0.05)
        release.set()
        assert committer.wait_idle(10)
        assert future.result(0).item_id is not None
    finally:
        release.set()
        committer.stop()


def test_lmtp_too_large_gets_one_552_per_recipient(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """LMTP: data over the limit is refused once per accepted recipient; the client never hangs."""
    cfg = make_config(db_url=db_url, listener={"protocol": "lmtp", "max_message_bytes": 4000})
    huge = message(2, body=(b"y" * 70 + b"\r\n") * 100)
    with running(cfg, db) as srv, LineClient(srv.host, srv.port) as c:
        c.reply()
        c.send(b"LHLO mta.example.net\r\n")
        c.reply()
        c.send(
            b"MAIL FROM:<carol@customer.org>\r\nRCPT TO:<support@example.com>\r\n"
            b"RCPT TO:<billing@example.com>\r\nDATA\r\n"
        )
        assert [c.reply()[0][:3] for _ in range(4)] == ["250", "250", "250", "354"]
        c.send(huge + b".\r\nNOOP\r\n")
        replies = [c.reply()[0][:9] for _ in range(3)]
    assert replies == ["552 5.3.4", "552 5.3.4", "250 OK"]
    assert spooled(db) == []


def test_lines_over_998_bytes_are_stored_not_refused(
    db: Database, db_url: str, make_config: ConfigFactory
) -> None:
    """Real mail breaks the 1000-octet line limit; it is stored, never refused for good."""
    long_line = b"A" * 5000
    raw = message(8, body=long_line + b"\r\n")
    with (
        running(make_config(db_url=db_url), db) as srv,
        smtplib.SMTP(srv.host, srv.port, timeout=10) as c,
    ):
        c.sendmail("carol@customer.org", ["support@example.com"], raw)
    (item,) = spooled(db)
    assert long_line in item.raw
