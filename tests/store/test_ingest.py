"""Ingest: stored mail becomes tickets, replies land in the right ticket (SPEC §3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

import pytest
from sqlmodel import Session

from mailtix.config import Config
from mailtix.core import replyaddr
from mailtix.runner import Runner
from mailtix.services import ingest
from mailtix.store import bounces, spool, tickets
from mailtix.store.db import Database
from mailtix.store.spool import Envelope
from mailtix.store.tables import SpoolItem, TicketMessage

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def mail(
    frm: str = "carol@customer.org",
    to: str = "support@example.com",
    subject: str = "Printer on fire",
    body: str = "It is on fire.\n",
    msgid: str | None = None,
    **headers: str,
) -> bytes:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = format_datetime(T0)
    m["Message-ID"] = (
        msgid or f"<{abs(hash((frm, subject, body, tuple(headers.items()))))}@customer.org>"
    )
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    return m.as_bytes()


Deliver = Callable[..., ingest.ItemOutcome]


def _incoming(s: Session, ticket_id: int | None) -> list[TicketMessage]:
    assert ticket_id is not None
    return [m for m in tickets.messages(s, ticket_id) if m.direction == "in"]


@pytest.fixture
def deliver(db: Database, config: Config) -> Deliver:
    """Spool raw (as an SMTP edge would) and run the ingest for it."""
    clock = iter(T0 + timedelta(minutes=i) for i in range(1000))

    def _deliver(
        raw: bytes, rcpt: str = "support@example.com", mail_from: str | None = None
    ) -> ingest.ItemOutcome:
        now = next(clock)
        if mail_from is None:  # as an MTA would say it: the From address
            mail_from = parseaddr(message_from_bytes(raw).get("From", ""))[1]
        with db.write() as s:
            (stored,) = spool.put_many(
                s, [(raw, Envelope(source="smtp", mail_from=mail_from, rcpt_to=(rcpt,)))], now
            )
        assert stored.item_id is not None, "test sent a duplicate"
        return ingest.process_item(db, config, stored.item_id, now)

    return _deliver


def test_new_mail_opens_a_ticket_for_the_sender(db: Database, deliver: Deliver) -> None:
    """A first mail opens ticket (status new) with requester, queue, message and thread ref."""
    out = deliver(mail(subject="Printer on fire", msgid="<a1@customer.org>"))
    assert out.state == "done" and out.ticket_id is not None
    with db.read() as s:
        t = tickets.get(s, out.ticket_id)
        assert t is not None
        assert (t.status, t.requester, t.queue, t.subject) == (
            "new",
            "carol@customer.org",
            "support",
            "Printer on fire",
        )
        (m,) = [m for m in tickets.messages(s, out.ticket_id) if m.direction == "in"]
        assert "on fire" in m.body
        assert tickets.ticket_for_message_ids(s, ["<a1@customer.org>"]) == out.ticket_id


def test_queue_comes_from_the_recipient(db: Database, deliver: Deliver) -> None:
    """Mail to billing@ lands in the billing queue."""
    out = deliver(mail(to="billing@example.com"), rcpt="billing@example.com")
    with db.read() as s:
        assert tickets.get(s, out.ticket_id).queue == "billing"  # type: ignore[union-attr]


def test_reply_by_references_joins_the_ticket(deliver: Deliver) -> None:
    """In-Reply-To naming a stored Message-ID threads the reply, whatever its subject."""
    first = deliver(mail(msgid="<orig@customer.org>"))
    reply = deliver(
        mail(subject="something else", msgid="<r1@customer.org>", In_Reply_To="<orig@customer.org>")
    )
    assert reply.ticket_id == first.ticket_id


def test_subject_tag_from_requester_joins(deliver: Deliver) -> None:
    """The requester's mail tagged [Ticket #N] joins ticket N, behind any reply prefixes."""
    first = deliver(mail())
    reply = deliver(
        mail(subject=f"AW: RE: [ticket #{first.ticket_id}] Printer on fire", body="Still burning")
    )
    assert reply.ticket_id == first.ticket_id


def test_subject_tag_from_stranger_opens_new_ticket(db: Database, deliver: Deliver) -> None:
    """Copying someone's tag does not write into their ticket (SPEC §3)."""
    first = deliver(mail())
    other = deliver(mail(frm="mallory@evil.example", subject=f"Re: [Ticket #{first.ticket_id}] hi"))
    assert other.ticket_id != first.ticket_id
    with db.read() as s:
        kinds = [e.kind for e in tickets.events(s, other.ticket_id)]  # type: ignore[arg-type]
    assert "claimed-tag" in kinds


def test_reply_reopens_pending_ticket(db: Database, deliver: Deliver) -> None:
    """A customer reply to a pending ticket puts it back to open."""
    first = deliver(mail(msgid="<p1@customer.org>"))
    with db.write() as s:
        t = tickets.get(s, first.ticket_id)  # type: ignore[arg-type]
        tickets.set_status(s, t, "pending", actor="alice@example.com", now=T0)  # type: ignore[arg-type]
    deliver(mail(body="here is the info", In_Reply_To="<p1@customer.org>"))
    with db.read() as s:
        assert tickets.get(s, first.ticket_id).status == "open"  # type: ignore[arg-type, union-attr]


def test_reply_to_closed_ticket_opens_a_linked_one(db: Database, deliver: Deliver) -> None:
    """After closing, a reply opens a new ticket that follows the old one."""
    first = deliver(mail(msgid="<c1@customer.org>"))
    with db.write() as s:
        t = tickets.get(s, first.ticket_id)  # type: ignore[arg-type]
        tickets.set_status(s, t, "closed", actor="alice@example.com", now=T0)  # type: ignore[arg-type]
    again = deliver(mail(body="it is back", In_Reply_To="<c1@customer.org>"))
    assert again.ticket_id != first.ticket_id
    with db.read() as s:
        assert tickets.get(s, again.ticket_id).follows_ticket_id == first.ticket_id  # type: ignore[arg-type, union-attr]


def test_signed_reply_address_links_without_tag_or_references(
    deliver: Deliver, config: Config
) -> None:
    """Mail to a ticket's signed reply address joins it even with a bare subject."""
    first = deliver(mail())
    address = replyaddr.make(
        "support@example.com",
        first.ticket_id,
        "carol@customer.org",  # type: ignore[arg-type]
        config.reply_secret,
    )
    reply = deliver(mail(to=address, subject="thanks", body="ok"), rcpt=address)
    assert reply.ticket_id == first.ticket_id


def test_same_message_id_twice_is_stored_once(db: Database, deliver: Deliver) -> None:
    """A second copy (other bytes, same Message-ID) adds nothing to the ticket."""
    first = deliver(mail(msgid="<dup@customer.org>"))
    second = deliver(mail(msgid="<dup@customer.org>", X_Extra="copy via another route"))
    assert second.ticket_id == first.ticket_id and "duplicate" in second.detail
    with db.read() as s:
        assert len(_incoming(s, first.ticket_id)) == 1


def test_auto_reply_is_an_event_not_a_reopen(db: Database, deliver: Deliver) -> None:
    """An out-of-office on a pending ticket is recorded and leaves its status alone."""
    first = deliver(mail(msgid="<ooo@customer.org>"))
    with db.write() as s:
        t = tickets.get(s, first.ticket_id)  # type: ignore[arg-type]
        tickets.set_status(s, t, "pending", actor="alice@example.com", now=T0)  # type: ignore[arg-type]
    out = deliver(
        mail(
            subject="Out of office", In_Reply_To="<ooo@customer.org>", Auto_Submitted="auto-replied"
        )
    )
    assert out.ticket_id == first.ticket_id
    with db.read() as s:
        assert tickets.get(s, first.ticket_id).status == "pending"  # type: ignore[arg-type, union-attr]
        assert len(_incoming(s, first.ticket_id)) == 1
        assert "auto-reply" in [e.kind for e in tickets.events(s, first.ticket_id)]  # type: ignore[arg-type]


def test_not_mail_is_quarantined_with_reason(db: Database, deliver: Deliver) -> None:
    """Bytes that are no message are set aside, listed with the reason."""
    out = deliver(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8)
    assert out.state == "quarantined" and "not mail" in out.detail
    with db.read() as s:
        (item,) = spool.quarantined(s)
        assert item.last_error == out.detail


def test_cc_participants_are_recorded(db: Database, deliver: Deliver) -> None:
    """People the customer copied become participants; our own addresses do not."""
    out = deliver(mail(Cc="dan@customer.org, support@example.com"))
    with db.read() as s:
        emails = {p.email: p.role for p in tickets.participants(s, out.ticket_id)}  # type: ignore[arg-type]
    assert emails == {"carol@customer.org": "requester", "dan@customer.org": "cc"}


@pytest.fixture
def unwritable_attachments(
    make_config: Callable[..., Config], db_url: str, tmp_path: Path
) -> Config:
    """A config whose attachment directory is a file: every attachment fails to save."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the attachment directory should be")
    return make_config(db_url=db_url, tickets={"attachment_dir": str(blocker)})


def mail_with_file(frm: str = "carol@customer.org") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, "support@example.com", "file"
    m.set_content("see attached")
    m.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="a.pdf")
    return m.as_bytes()


def test_runner_quarantines_an_item_after_three_failures(
    db: Database, unwritable_attachments: Config
) -> None:
    """A failing item waits 30 s, then 60 s, before its retries; then it is set aside."""
    cfg = unwritable_attachments
    with db.write() as s:
        (stored,) = spool.put_many(s, [(mail_with_file(), Envelope(source="inject"))], T0)
    clock = [T0]
    runner = Runner(db, cfg, lambda: clock[0])
    states = []
    for wait in (0, 29, 1, 59, 1):  # seconds since the previous round
        clock[0] += timedelta(seconds=wait)
        states.append([o.state for o in runner.run_once()])
    assert states == [["failed"], [], ["failed"], [], ["quarantined"]]
    with db.read() as s:
        item = s.get(SpoolItem, stored.item_id)
        assert item is not None and item.state == "quarantined" and item.attempts == 3
        assert "Error" in (item.last_error or "")
        assert tickets.find(s) == []  # nothing half-written


def test_runner_processes_in_spool_order(db: Database, config: Config) -> None:
    """A reply stored after its original is threaded even when both wait together."""
    with db.write() as s:
        spool.put_many(
            s,
            [
                (mail(msgid="<o@x.org>"), Envelope(source="import")),
                (
                    mail(body="reply", msgid="<r@x.org>", In_Reply_To="<o@x.org>"),
                    Envelope(source="import"),
                ),
            ],
            T0,
        )
    outcomes = Runner(db, config, lambda: T0).run_once()
    assert [o.state for o in outcomes] == ["done", "done"]
    assert outcomes[0].ticket_id == outcomes[1].ticket_id
    with db.read() as s:
        assert json.loads(tickets.find(s)[0].tags) == []


def dsn(original_message_id: str, failed: str = "carol@customer.org", code: str = "5.1.1") -> bytes:
    """A standard RFC 3464 bounce of one of our messages."""
    return (
        "From: MAILER-DAEMON@mx.customer.org\r\nTo: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{abs(hash((original_message_id, code)))}@mx.customer.org>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.org\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: {code}\r\n"
        f"Diagnostic-Code: smtp; 550 {code} user unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.com\r\nTo: {failed}\r\nMessage-ID: {original_message_id}\r\n"
        "Subject: [Ticket #1] Printer on fire\r\n--B--\r\n"
    ).encode()


def test_bounce_of_our_mail_is_recorded_on_its_ticket(db: Database, deliver: Deliver) -> None:
    """A DSN naming a message we sent is a bounce event on that ticket, not a new ticket."""
    first = deliver(mail())
    with db.read() as s:
        ours = [m.message_id for m in tickets.messages(s, first.ticket_id) if m.direction == "out"]
    assert ours, "the acknowledgement was recorded as sent mail"
    out = deliver(dsn(ours[0]), mail_from="")
    assert (out.state, out.ticket_id) == ("done", first.ticket_id)
    with db.read() as s:
        (event,) = [e for e in tickets.events(s, first.ticket_id) if e.kind == "bounce"]
        detail = json.loads(event.detail)
        assert detail["hard"] is True
        assert detail["recipients"][0]["address"] == "carol@customer.org"
        assert detail["recipients"][0]["status"] == "5.1.1"
        assert len(tickets.find(s)) == 1


def test_hard_bounces_suppress_the_address(db: Database, deliver: Deliver) -> None:
    """After three hard bounces the address is marked suppressed, recorded on the ticket."""
    first = deliver(mail())
    with db.read() as s:
        ours = [m.message_id for m in tickets.messages(s, first.ticket_id) if m.direction == "out"]
    for code in ("5.1.1", "5.1.2", "5.2.1"):
        deliver(dsn(ours[0], code=code), mail_from="")
    with db.read() as s:
        assert bounces.suppressed(s, "carol@customer.org") is not None
        kinds = [e.kind for e in tickets.events(s, first.ticket_id)]
    assert kinds.count("bounce") == 3 and kinds.count("address-suppressed") == 1


def test_bounce_matching_nothing_is_quarantined(db: Database, deliver: Deliver) -> None:
    """Backscatter for mail we never sent is set aside with the reason, not a ticket."""
    out = deliver(dsn("<never-sent@elsewhere.org>"), mail_from="")
    assert out.state == "quarantined" and "matches none of our mail" in out.detail
    with db.read() as s:
        assert tickets.find(s) == []


def test_a_failing_item_does_not_hold_back_its_batch(
    db: Database, unwritable_attachments: Config
) -> None:
    """Items share a transaction, but one item's failure rolls back only that item."""
    cfg = unwritable_attachments
    with db.write() as s:
        spool.put_many(
            s,
            [
                (mail(msgid="<ok1@x.org>"), Envelope(source="inject")),
                (mail_with_file("x@y.org"), Envelope(source="inject")),
                (mail(frm="dan@x.org", msgid="<ok2@x.org>"), Envelope(source="inject")),
            ],
            T0,
        )
    outcomes = Runner(db, cfg, lambda: T0).run_once()
    assert [o.state for o in outcomes] == ["done", "failed", "done"]
    with db.read() as s:
        assert {t.requester for t in tickets.find(s)} == {"carol@customer.org", "dan@x.org"}
        assert spool.pending_ids(s, 10) == [outcomes[1].item_id]


def _close(db: Database, ticket_id: int | None, status: str = "closed") -> None:
    with db.write() as s:
        t = tickets.get(s, ticket_id)  # type: ignore[arg-type]
        tickets.set_status(s, t, status, actor="alice@example.com", now=T0)  # type: ignore[arg-type]


def test_auto_reply_to_a_closed_ticket_stays_on_it(db: Database, deliver: Deliver) -> None:
    """An out-of-office answering our 'closed' notice is an event, not a new ticket."""
    first = deliver(mail(msgid="<cl1@customer.org>"))
    _close(db, first.ticket_id)
    out = deliver(
        mail(
            subject="Out of office", In_Reply_To="<cl1@customer.org>", Auto_Submitted="auto-replied"
        )
    )
    assert out.ticket_id == first.ticket_id
    with db.read() as s:
        assert len(tickets.find(s)) == 1
        assert "auto-reply" in [e.kind for e in tickets.events(s, first.ticket_id)]  # type: ignore[arg-type]


def test_agent_answer_to_a_closed_ticket_reaches_the_customer(
    db: Database, deliver: Deliver, config: Config
) -> None:
    """An agent's authenticated reply on a closed ticket is relayed, not a ticket of its own."""
    first = deliver(mail())
    _close(db, first.ticket_id)
    address = replyaddr.make(
        "support@example.com",
        first.ticket_id,
        "alice@example.com",
        config.reply_secret,  # type: ignore[arg-type]
    )
    out = deliver(
        mail(
            frm="alice@example.com",
            to=address,
            subject="one more thing",
            body="Try turning it off.",
        ),
        rcpt=address,
    )
    assert out.ticket_id == first.ticket_id
    with db.read() as s:
        assert len(tickets.find(s)) == 1
        relayed = [m for m in tickets.messages(s, first.ticket_id) if m.direction == "out"]  # type: ignore[arg-type]
        assert any(
            "Try turning it off." in m.body and "carol@customer.org" in m.to_addrs for m in relayed
        )


def test_forged_agent_mail_does_not_reopen(db: Database, deliver: Deliver) -> None:
    """A From naming an agent, without proof, is kept but changes no status (SPEC §4)."""
    first = deliver(mail())
    _close(db, first.ticket_id, "pending")
    deliver(mail(frm="alice@example.com", subject=f"Re: [Ticket #{first.ticket_id}] x"))
    with db.read() as s:
        assert tickets.get(s, first.ticket_id).status == "pending"  # type: ignore[arg-type, union-attr]
        kinds = [e.kind for e in tickets.events(s, first.ticket_id)]  # type: ignore[arg-type]
    assert "unauthenticated-agent" in kinds
