"""Notifications: who gets which mail, threaded and signed, and who never gets one."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage

import pytest
from sqlmodel import Session, select

from mailtix.config import Config
from mailtix.core import replyaddr
from mailtix.core.message import ParsedMessage
from mailtix.core.parse import parse
from mailtix.services import notify
from mailtix.store import tickets
from mailtix.store.db import Database
from mailtix.store.tables import OutboxItem, Ticket, TicketMessage
from tests.conftest import ConfigFactory

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _raw(
    sender: str,
    msgid: str,
    body: str = "My printer is on fire.",
    *,
    subject: str = "Printer",
    extra: str = "",
) -> bytes:
    return (
        f"From: Carla Customer <{sender}>\r\nTo: support@example.com\r\n"
        f"Message-ID: {msgid}\r\nSubject: {subject}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def _open(
    s: Session,
    raw: bytes,
    *,
    queue: str = "support",
    language: str | None = None,
) -> tuple[Ticket, TicketMessage, ParsedMessage]:
    p = parse(raw)
    t = tickets.create(
        s,
        subject=p.subject,
        queue=queue,
        requester=p.from_addr,
        requester_name=p.from_name,
        now=NOW,
    )
    t.language = language
    m = _incoming(s, t, p)
    return t, m, p


def _incoming(s: Session, t: Ticket, p: ParsedMessage) -> TicketMessage:
    assert p.message_id is not None
    return tickets.add_message(
        s,
        t,
        message_id=p.message_id,
        direction="in",
        from_addr=p.from_addr,
        from_name=p.from_name,
        subject=p.subject,
        body=p.text,
        now=NOW,
    )


def _rows(s: Session, kind: str | None = None) -> list[OutboxItem]:
    stmt = select(OutboxItem).order_by(OutboxItem.id)  # type: ignore[arg-type]
    return [r for r in s.scalars(stmt) if kind is None or r.kind == kind]


def _mail(row: OutboxItem) -> EmailMessage:
    msg = email.message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def _events(s: Session, tid: int, kind: str) -> list[dict[str, object]]:
    return [json.loads(e.detail) for e in tickets.events(s, tid) if e.kind == kind]


@pytest.fixture
def cfg(make_config: ConfigFactory, db_url: str) -> Config:
    return make_config(db_url=db_url, limits={"auto_replies_per_address_per_hour": 3})


def test_new_ticket_acks_the_requester_and_tells_each_queue_agent(
    db: Database, cfg: Config
) -> None:
    """One ack, one notice per agent of the queue, each with its own signed Reply-To."""
    with db.write() as s:
        t, m, p = _open(s, _raw("carla@customer.org", "<c1@customer.org>"))
        notify.on_new_ticket(s, cfg, t, m, p, may_auto_reply=True, now=NOW)
    with db.read() as s:
        (ack,) = _rows(s, "ack")
        notices = _rows(s, "agent_new")
        assert t.id is not None
        history = [x for x in tickets.messages(s, t.id) if x.direction == "out"]
    a = _mail(ack)
    assert json.loads(ack.recipients) == ["carla@customer.org"]
    assert a["Subject"] == f"Re: [Ticket #{t.id}] Printer"
    assert a["In-Reply-To"] == "<c1@customer.org>" and "<c1@customer.org>" in a["References"]
    assert a["Auto-Submitted"] == "auto-replied" and a["X-Mailtix-Loop"]
    assert a["Message-ID"] == ack.message_id and ack.message_id.endswith("@example.com>")
    token = replyaddr.parse(a["Reply-To"].addresses[0].addr_spec, cfg.reply_secret)
    assert token is not None and token.ticket_id == t.id
    assert token.issued_to("carla@customer.org", cfg.reply_secret)
    assert "[Ticket #" in _text(a)
    # Alice and Bob both work the support queue: one logical notice, two copies.
    assert sorted(json.loads(n.recipients)[0] for n in notices) == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert len({n.message_id for n in notices}) == 1
    for n in notices:
        mail, agent = _mail(n), json.loads(n.recipients)[0]
        reply_to = mail["Reply-To"].addresses[0].addr_spec
        tok = replyaddr.parse(reply_to, cfg.reply_secret)
        assert tok is not None and tok.issued_to(agent, cfg.reply_secret)
        assert reply_to in _text(mail) and "My printer is on fire." in _text(mail)
        assert mail["To"].addresses[0].addr_spec == agent
    assert [(h.internal, h.message_id) for h in history] == [
        (False, ack.message_id),
        (True, notices[0].message_id),
    ]


def test_the_same_cause_never_enqueues_twice(db: Database, cfg: Config) -> None:
    """Running on_new_ticket again for the same message renders and adds nothing."""
    with db.write() as s:
        t, m, p = _open(s, _raw("carla@customer.org", "<c1@customer.org>"))
        notify.on_new_ticket(s, cfg, t, m, p, may_auto_reply=True, now=NOW)
        notify.on_new_ticket(s, cfg, t, m, p, may_auto_reply=True, now=NOW)
        assert len(_rows(s)) == 3


@pytest.mark.parametrize(
    ("sender", "may_auto_reply", "reason"),
    [
        ("carla@customer.org", False, "automated"),
        ("MAILER-DAEMON@mx.customer.org", True, "machine"),
        ("postmaster@customer.org", True, "machine"),
        ("support@example.com", True, "our own"),
        ("billing+x@example.com", True, "our own"),
    ],
)
def test_machines_and_ourselves_get_no_acknowledgement(
    db: Database, cfg: Config, sender: str, may_auto_reply: bool, reason: str
) -> None:
    """No ack (SPEC §6), an event saying why, and the agents are still told."""
    with db.write() as s:
        t, m, p = _open(s, _raw(sender, "<m1@customer.org>"))
        notify.on_new_ticket(s, cfg, t, m, p, may_auto_reply=may_auto_reply, now=NOW)
        assert t.id is not None
        assert _rows(s, "ack") == []
        (event,) = _events(s, t.id, "auto-reply-suppressed")
        assert reason in str(event["reason"])
        assert len(_rows(s, "agent_new")) == 2


def test_an_auto_reply_storm_is_cut_by_the_rate_limit(db: Database, cfg: Config) -> None:
    """12 new tickets from one address in an hour get 3 acks; 9 suppressions are recorded."""
    suppressed = 0
    for i in range(12):
        with db.write() as s:
            t, m, p = _open(s, _raw("robot@customer.org", f"<storm{i}@customer.org>"))
            notify.on_new_ticket(
                s, cfg, t, m, p, may_auto_reply=True, now=NOW + timedelta(minutes=i)
            )
            assert t.id is not None
            suppressed += len(_events(s, t.id, "auto-reply-suppressed"))
    with db.read() as s:
        assert len(_rows(s, "ack")) == 3
    assert suppressed == 9
    # An hour after the first ack, the address may get one again.
    with db.write() as s:
        t, m, p = _open(s, _raw("robot@customer.org", "<later@customer.org>"))
        notify.on_new_ticket(s, cfg, t, m, p, may_auto_reply=True, now=NOW + timedelta(hours=1))
        assert len(_rows(s, "ack")) == 4


def test_customer_reply_goes_to_the_assignee_only(
    db: Database, make_config: ConfigFactory, db_url: str
) -> None:
    """With an assignee, only they are told, in their language; quoted history is left out."""
    cfg = make_config(
        db_url=db_url,
        agent=[
            {"email": "alice@example.com", "queues": ["support"]},
            {"email": "bob@example.com", "queues": ["support"], "language": "fr"},
        ],
    )
    with db.write() as s:
        t, _m, _p = _open(s, _raw("carla@customer.org", "<c1@customer.org>"))
        t.assignee = "bob@example.com"
        p = parse(
            _raw(
                "carla@customer.org",
                "<c2@customer.org>",
                "Still burning.\r\n\r\nOn Mon, Support wrote:\r\n> old text",
            )
        )
        m = _incoming(s, t, p)
        notify.on_customer_reply(s, cfg, t, m, p, may_auto_reply=True, now=NOW)
        (notice,) = _rows(s, "agent_reply")
    mail = _mail(notice)
    assert json.loads(notice.recipients) == ["bob@example.com"]
    assert "Still burning." in _text(mail) and "old text" not in _text(mail)
    assert "Nouveau" not in _text(mail) and "a écrit" in _text(mail)  # Bob reads French


def test_agent_answer_is_relayed_to_requester_and_ccs_and_opens_the_ticket(
    db: Database, cfg: Config
) -> None:
    """Quoted text stripped; each customer gets a copy with their own Reply-To; new → open."""
    with db.write() as s:
        t, m, p = _open(s, _raw("carla@customer.org", "<c1@customer.org>"))
        assert t.id is not None
        tickets.add_participants(s, t.id, [("dan@customer.org", "Dan")], role="cc")
        notify.on_new_ticket(s, cfg, t, m, p, may_auto_reply=True, now=NOW)
        later = NOW + timedelta(minutes=5)
        answer = parse(
            b"From: Alice <alice@example.com>\r\nTo: support@example.com\r\n"
            b"Message-ID: <a1@example.com>\r\nSubject: Re: [Ticket #1] Printer\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            b"Unplug it, please.\r\n    (then wait)\r\n\r\n"
            b"On Mon, Support <support@example.com> wrote:\r\n> -- reply above this line --\r\n"
            b"> My printer is on fire.\r\n"
        )
        am = tickets.add_message(
            s,
            t,
            message_id="<a1@example.com>",
            direction="in",
            from_addr="alice@example.com",
            subject=answer.subject,
            body=answer.text,
            now=later,
        )
        notify.on_agent_answer(s, cfg, t, am, answer, agent="alice@example.com", now=later)
        copies = _rows(s, "answer")
        (ack,) = _rows(s, "ack")
        assert (t.status, t.first_response_at) == ("open", later)
        assert _events(s, t.id, "status")[-1] == {"old": "new", "new": "open"}
    assert sorted(json.loads(c.recipients)[0] for c in copies) == [
        "carla@customer.org",
        "dan@customer.org",
    ]
    for c in copies:
        mail, who = _mail(c), json.loads(c.recipients)[0]
        assert _text(mail).startswith("Unplug it, please.\n    (then wait)\n")
        assert "My printer" not in _text(mail)
        tok = replyaddr.parse(mail["Reply-To"].addresses[0].addr_spec, cfg.reply_secret)
        assert tok is not None and tok.issued_to(who, cfg.reply_secret)
        assert mail["To"].addresses[0].addr_spec == "carla@customer.org"
        assert mail["Cc"].addresses[0].addr_spec == "dan@customer.org"
        assert "Alice" in mail["From"].addresses[0].display_name
        # The customer's client threads it under their message and our ack.
        assert mail["References"].split() == ["<c1@customer.org>", ack.message_id]
        assert mail["In-Reply-To"] == ack.message_id


def test_an_answer_with_nothing_to_say_sends_nothing(db: Database, cfg: Config) -> None:
    """A reply that is all quote (or, later, all commands) relays nothing and keeps the status."""
    with db.write() as s:
        t, m, p = _open(s, _raw("carla@customer.org", "<c1@customer.org>"))
        quoted = parse(_raw("alice@example.com", "<a1@example.com>", "> only a quote"))
        notify.on_agent_answer(s, cfg, t, m, quoted, agent="alice@example.com", now=NOW)
        notify.on_agent_answer(s, cfg, t, m, p, agent="alice@example.com", now=NOW, body="  ")
        assert _rows(s, "answer") == [] and t.status == "new" and t.first_response_at is None


@pytest.mark.parametrize(
    ("actor", "auto"), [("alice@example.com", "auto-replied"), ("", "auto-generated")]
)
def test_resolved_and_closed_tell_the_requester(
    db: Database, cfg: Config, actor: str, auto: str
) -> None:
    """resolved and closed mail the requester; other statuses don't; a job's mail is scheduled."""
    with db.write() as s:
        t, _m, _p = _open(s, _raw("carla@customer.org", "<c1@customer.org>"))
        notify.on_status_change(s, cfg, t, "new", "open", actor=actor, now=NOW)
        notify.on_status_change(s, cfg, t, "open", "resolved", actor=actor, now=NOW)
        notify.on_status_change(s, cfg, t, "resolved", "closed", actor=actor, now=NOW)
        rows = _rows(s)
    assert [r.kind for r in rows] == ["resolved", "closed"]
    assert all(_mail(r)["Auto-Submitted"] == auto for r in rows)
    assert "resolved" in _text(_mail(rows[0])) and "closed" in _text(_mail(rows[1]))


def test_language_follows_queue_then_ticket(db: Database, cfg: Config) -> None:
    """The billing queue speaks French, unless the ticket says otherwise."""
    with db.write() as s:
        t, m, p = _open(s, _raw("a@customer.org", "<f1@customer.org>"), queue="billing")
        notify.on_new_ticket(s, cfg, t, m, p, may_auto_reply=True, now=NOW)
        t2, m2, p2 = _open(
            s, _raw("b@customer.org", "<f2@customer.org>"), queue="billing", language="en"
        )
        notify.on_new_ticket(s, cfg, t2, m2, p2, may_auto_reply=True, now=NOW)
        fr, en = _rows(s, "ack")
    assert "Bonjour" in _text(_mail(fr)) and "Hello" in _text(_mail(en))
    assert _mail(fr)["From"].addresses[0].addr_spec == "billing@example.com"


def test_a_failed_delivery_is_recorded_and_told_to_the_other_agents(
    db: Database, cfg: Config
) -> None:
    """An event on the ticket; a notice to the agents not among the failed recipients."""
    with db.write() as s:
        t, _m, _p = _open(s, _raw("carla@customer.org", "<c1@customer.org>"))
        assert t.id is not None
        notify.on_delivery_failed(
            s,
            cfg,
            ticket_id=t.id,
            outbox_id=7,
            kind="agent_new",
            message_id="<n@example.com>",
            recipients=["alice@example.com"],
            error="550 5.1.1 no such user",
            now=NOW,
        )
        (notice,) = _rows(s, notify.FAILURE_KIND)
        (event,) = _events(s, t.id, "delivery-failed")
        # A failed failure notice is recorded, never notified about.
        notify.on_delivery_failed(
            s,
            cfg,
            ticket_id=t.id,
            outbox_id=notice.id or 0,
            kind=notify.FAILURE_KIND,
            message_id=notice.message_id,
            recipients=["bob@example.com"],
            error="550",
            now=NOW,
        )
        assert len(_rows(s, notify.FAILURE_KIND)) == 1
        assert len(_events(s, t.id, "delivery-failed")) == 2
    assert json.loads(notice.recipients) == ["bob@example.com"]
    assert event["error"] == "550 5.1.1 no such user"
    mail = _mail(notice)
    assert mail["Subject"].startswith("Undeliverable:") and mail["Auto-Submitted"] == (
        "auto-generated"
    )


def test_status_notices_are_limited_per_ticket_but_do_not_trip_the_loop_breaker(
    db: Database, cfg: Config
) -> None:
    """An agent flipping a ticket back and forth mails at most 5 notices an hour; a
    customer's new ticket right after a notice is still acknowledged."""
    with db.write() as s:
        t, _m, _p = _open(s, _raw("carla@customer.org", "<f1@customer.org>"))
        for i in range(8):
            at = NOW + timedelta(minutes=i)
            notify.on_status_change(
                s, cfg, t, "open", "resolved", actor="alice@example.com", now=at
            )
        assert len(_rows(s, "resolved")) == 5
        reasons = [str(e["reason"]) for e in _events(s, t.id or 0, "auto-reply-suppressed")]
        assert reasons == ["rate limit: 5 automatic mails an hour on this ticket"] * 3
        t2, m2, p2 = _open(s, _raw("carla@customer.org", "<f2@customer.org>", subject="Other"))
        notify.on_new_ticket(
            s, cfg, t2, m2, p2, may_auto_reply=True, now=NOW + timedelta(minutes=9)
        )
        assert len(_rows(s, "ack")) == 1


def test_a_zero_limit_sends_no_acknowledgement(
    db: Database, make_config: ConfigFactory, db_url: str
) -> None:
    """auto_replies_per_address_per_hour = 0 turns acknowledgements off, and says so."""
    cfg0 = make_config(db_url=db_url, limits={"auto_replies_per_address_per_hour": 0})
    with db.write() as s:
        t, m, p = _open(s, _raw("carla@customer.org", "<z1@customer.org>"))
        notify.on_new_ticket(s, cfg0, t, m, p, may_auto_reply=True, now=NOW)
        assert _rows(s, "ack") == []
        reasons = [e["reason"] for e in _events(s, t.id or 0, "auto-reply-suppressed")]
        assert reasons == ["rate limit: 0 automatic mails an hour to this address"]
