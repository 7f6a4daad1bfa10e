"""Ingest one spooled message: ONE transaction from parsed mail to ticket change.

`prepare` (parse; pure CPU, may run in another process) happens outside the
write transaction so the database lock is held only for the bookkeeping.
`apply` runs the STEPS below in order inside `db.write()`; the ticket
change, the notifications it causes (outbox rows) and the spool item's
state commit together, so a crash anywhere leaves an item that is simply
processed again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from mailtix.config import Config
from mailtix.core import replyaddr, subject, workflow
from mailtix.core.auth import Actor, authenticate
from mailtix.core.bounce import BounceReport, parse_bounce
from mailtix.core.classify import Disposition, classify
from mailtix.core.classify import Envelope as ClassifyEnvelope
from mailtix.core.linking import LinkDecision, LinkInput, decide
from mailtix.core.message import ParsedMessage
from mailtix.core.parse import parse
from mailtix.core.sanitize import sanitize_html
from mailtix.errors import NotMail
from mailtix.services import attachments, notify
from mailtix.store import bounces, outbox, spool, tickets
from mailtix.store.db import Database
from mailtix.store.tables import SpoolItem, Ticket, TicketMessage

log = logging.getLogger("mailtix.ingest")


@dataclass(frozen=True)
class Prepared:
    """The parse of one item: a message, or the reason it is not one."""

    item_id: int
    parsed: ParsedMessage | None
    error: str | None = None


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one spool item."""

    item_id: int
    state: str  # done | quarantined | skipped
    ticket_id: int | None = None
    detail: str = ""


def prepare(item_id: int, raw: bytes, max_attachment_bytes: int, max_attachments: int) -> Prepared:
    """Parse raw (pure; safe to run in a worker process)."""
    try:
        parsed = parse(
            raw, max_attachment_bytes=max_attachment_bytes, max_attachments=max_attachments
        )
    except NotMail as err:
        return Prepared(item_id, None, f"not mail: {err}")
    return Prepared(item_id, parsed)


def process_item(db: Database, cfg: Config, item_id: int, now: datetime) -> ItemOutcome:
    """Parse and apply one item (the runner's unit of work)."""
    with db.read() as s:
        item = spool.get(s, item_id)
        if item is None or item.state != "new":
            return ItemOutcome(item_id, "skipped", detail="not waiting")
        raw = item.raw
    t = cfg.tickets
    return apply(db, cfg, prepare(item_id, raw, t.max_attachment_bytes, t.max_attachments), now)


def apply(db: Database, cfg: Config, prep: Prepared, now: datetime) -> ItemOutcome:
    """Run the ingest steps for one prepared item in its own write transaction."""
    with db.write() as s:
        return apply_in(s, cfg, prep, now)


def apply_in(s: Session, cfg: Config, prep: Prepared, now: datetime) -> ItemOutcome:
    """Run the ingest steps for one prepared item inside the caller's transaction.

    Everything the item causes (ticket change, outbox rows, its spool state)
    is written through s, so it commits or rolls back as one.
    """
    item = spool.lock_new(s, prep.item_id)
    if item is None:
        return ItemOutcome(prep.item_id, "skipped", detail="taken or done already")
    if prep.parsed is None:
        reason = prep.error or "unparseable"
        spool.quarantine(s, item, reason, now)
        return ItemOutcome(prep.item_id, "quarantined", detail=reason)
    work = Work(s=s, cfg=cfg, item=item, parsed=prep.parsed, now=now)
    for step in STEPS:
        step(work)
        if work.finished:
            break
    if work.quarantine_reason is not None:
        spool.quarantine(s, item, work.quarantine_reason, now)
        return ItemOutcome(item.id or 0, "quarantined", detail=work.quarantine_reason)
    ticket_id = work.ticket.id if work.ticket is not None else None
    spool.mark_done(s, item, ticket_id, now)
    return ItemOutcome(item.id or 0, "done", ticket_id, work.detail)


# ---------------------------------------------------------------- the steps
@dataclass
class Work:
    """What the steps know and decide about one item, filled in as they run."""

    s: Session
    cfg: Config
    item: SpoolItem
    parsed: ParsedMessage
    now: datetime
    disposition: Disposition | None = None
    token: replyaddr.ReplyToken | None = None
    link: LinkDecision | None = None
    actor: Actor | None = None
    ticket: Ticket | None = None
    message: TicketMessage | None = None
    finished: bool = False
    detail: str = ""
    quarantine_reason: str | None = None

    @property
    def sender(self) -> str:
        return self.parsed.from_addr or self.item.mail_from.lower()

    @property
    def message_id(self) -> str:
        domain = self.cfg.outbound.from_address.rpartition("@")[2] or "mailtix.invalid"
        return self.parsed.message_id or f"<mailtix-spool-{self.item.id}@{domain}>"

    def finish(self, detail: str) -> None:
        self.finished = True
        self.detail = detail

    def set_aside(self, reason: str) -> None:
        self.finished = True
        self.quarantine_reason = reason


def skip_duplicate(w: Work) -> None:
    """The same Message-ID already on a ticket: another copy of it (RFC 5322 §3.6.4)."""
    if w.parsed.message_id is None:
        return
    ticket_id = tickets.has_incoming(w.s, w.parsed.message_id)
    if ticket_id is not None:
        w.ticket = tickets.get(w.s, ticket_id)
        # Same Message-ID, other bytes (the spool keeps exact copies apart): a copy
        # by another route, or a client reusing ids. Kept in the spool, noted here.
        tickets.add_event(
            w.s,
            ticket_id,
            "duplicate-message-id",
            actor=w.sender,
            now=w.now,
            message_id=w.parsed.message_id,
            subject=w.parsed.subject,
            spool_item=w.item.id,
        )
        w.finish(f"duplicate of a message already on ticket #{ticket_id}")


def classify_mail(w: Work) -> None:
    """Human, auto-reply, bounce, list or our own loop (see core.classify)."""
    env = ClassifyEnvelope(
        own_addresses=w.cfg.own_addresses,
        mail_from=w.item.mail_from.lower(),
        # Only an SMTP/LMTP edge saw the envelope: there "" really is the null sender.
        from_smtp=w.item.source in ("smtp", "lmtp"),
    )
    w.disposition = classify(w.parsed, env)


def find_ticket(w: Work) -> None:
    """Signed reply address, then References, then subject tag (SPEC §3)."""
    secret = w.cfg.reply_secret
    candidates = [*json.loads(w.item.rcpt_to), *w.parsed.to, *w.parsed.cc]
    for address in candidates:
        token = replyaddr.parse(address, secret)
        if token is not None:
            w.token = token
            break
    tag_id = subject.find_tag(w.parsed.subject, w.cfg.tickets.tag_prefix)
    by_ref = tickets.ticket_for_message_ids(w.s, w.parsed.thread_ids)
    w.link = decide(
        LinkInput(
            sender=w.sender,
            by_token=tickets.facts(w.s, w.token.ticket_id if w.token else None),
            by_reference=tickets.facts(w.s, by_ref),
            by_tag=tickets.facts(w.s, tag_id),
            tag_id=tag_id,
            agents=w.cfg.agent_emails,
        )
    )


def authenticate_sender(w: Work) -> None:
    """Who wrote this, and can we prove it (SPEC §4: signed address or trusted DKIM/SPF)."""
    w.actor = authenticate(
        w.parsed,
        w.token,
        agents=w.cfg.agent_emails,
        trusted_authserv_ids=frozenset(w.cfg.security.trusted_authserv_ids),
        secret=w.cfg.reply_secret,
    )


def reach_closed_ticket(w: Work) -> None:
    """Only a customer's own mail to a closed ticket opens a follow-up (SPEC §3).

    Machine mail (an out-of-office answering our "closed" notice) is recorded
    on the closed ticket, and an agent's authenticated answer goes to it too.
    """
    assert w.link is not None and w.disposition is not None and w.actor is not None
    if w.link.ticket_id is not None or w.link.follows is None:
        return
    agent = w.actor.is_agent and w.actor.authenticated
    if w.disposition.kind != "human" or agent:
        w.link = LinkDecision(
            w.link.follows, "closed-ticket", f"{w.link.reason} Kept on the closed ticket instead."
        )


def record_bounce(w: Work) -> None:
    """A bounce of our mail: matched to its ticket, recorded, the address counted (SPEC §6)."""
    assert w.disposition is not None and w.link is not None
    if w.disposition.kind != "bounce":
        return
    report = parse_bounce(w.parsed, w.item.raw)
    ticket_id = _bounced_ticket(w, report)
    failed = [r.address for r in report.recipients] if report else []
    if ticket_id is None:
        who = f" (for {', '.join(failed[:5])})" if failed else ""
        w.set_aside(f"bounce that matches none of our mail{who}: {w.disposition.reason}")
        return
    w.ticket = tickets.resolve_merged(w.s, ticket_id)
    tid = w.ticket.id if w.ticket is not None else ticket_id
    assert tid is not None
    suppressed: list[str] = []
    threshold = w.cfg.limits.hard_bounces_before_suppression
    for r in report.recipients if report and not report.delay_only else ():
        if bounces.record(
            w.s, r.address, hard=r.hard, status=r.status, now=w.now, threshold=threshold
        ):
            suppressed.append(r.address)
    tickets.add_event(
        w.s,
        tid,
        "bounce",
        actor=w.sender,
        now=w.now,
        reason=w.disposition.reason,
        hard=bool(report and report.hard),
        delay_only=bool(report and report.delay_only),
        recipients=[
            {
                "address": r.address,
                "status": r.status,
                "action": r.action,
                "diagnostic": r.diagnostic,
            }
            for r in (report.recipients if report else ())
        ],
        original_message_id=report.original_message_id if report else None,
        spool_item=w.item.id,
    )
    for address in suppressed:
        tickets.add_event(
            w.s,
            tid,
            "address-suppressed",
            now=w.now,
            address=address,
            reason=f"{threshold} hard bounces: no more mail is sent to this address",
        )
    w.finish(f"bounce recorded on ticket #{tid}")


def record_automated(w: Work) -> None:
    """Machine mail on a known ticket is an event: it neither reopens it nor adds a message."""
    assert w.disposition is not None and w.link is not None
    kind = w.disposition.kind
    if kind == "human":
        return
    if w.link.ticket_id is not None:
        w.ticket = tickets.get(w.s, w.link.ticket_id)
        tickets.add_event(
            w.s,
            w.link.ticket_id,
            kind.replace("_", "-"),
            actor=w.sender,
            now=w.now,
            reason=w.disposition.reason,
            subject=w.parsed.subject,
            message_id=w.message_id,
            spool_item=w.item.id,
        )
        w.finish(f"{kind} recorded on ticket #{w.link.ticket_id}: {w.disposition.reason}")
    elif kind == "loop":
        w.set_aside(f"mail from mailtix itself that matches no ticket ({w.disposition.reason})")


def open_ticket(w: Work) -> None:
    """No ticket matched: open one for the sender."""
    assert w.link is not None and w.disposition is not None
    if w.link.ticket_id is not None:
        return
    cfg, p = w.cfg, w.parsed
    queue = _queue_of(w)
    w.ticket = tickets.create(
        w.s,
        subject=subject.ticket_subject(p.subject, cfg.tickets.tag_prefix),
        queue=queue,
        requester=w.sender or "unknown@invalid",
        requester_name=p.from_name,
        now=w.now,
        follows=w.link.follows,
    )
    tid = w.ticket.id
    assert tid is not None
    tickets.add_event(
        w.s,
        tid,
        "created",
        actor=w.sender,
        now=w.now,
        via=w.link.via,
        reason=w.link.reason,
        classified=w.disposition.kind,
        why=w.disposition.reason,
    )
    if w.link.follows is not None:
        tickets.add_event(w.s, tid, "follows", now=w.now, ticket=w.link.follows)
        tickets.add_event(w.s, w.link.follows, "continued", now=w.now, ticket=tid)
    if w.link.claimed_tag is not None:
        tickets.add_event(
            w.s,
            tid,
            "claimed-tag",
            actor=w.sender,
            now=w.now,
            ticket=w.link.claimed_tag,
            note="the subject named another ticket, but the sender is not on it",
        )
    tickets.add_participants(w.s, tid, _copied(w), role="cc")
    w.message = _store_message(w)
    notify.on_new_ticket(
        w.s, cfg, w.ticket, w.message, p, may_auto_reply=_may_auto_reply(w), now=w.now
    )
    w.finish(f"opened ticket #{tid}")


def add_to_ticket(w: Work) -> None:
    """A reply on a known ticket: the customer's, or an agent's answer."""
    assert w.link is not None and w.link.ticket_id is not None and w.actor is not None
    w.ticket = tickets.resolve_merged(w.s, w.link.ticket_id)
    assert w.ticket is not None and w.ticket.id is not None
    w.message = _store_message(w)
    tid = w.ticket.id
    if w.actor.is_agent and w.actor.authenticated:
        notify.on_agent_answer(
            w.s, w.cfg, w.ticket, w.message, w.parsed, agent=w.actor.email, now=w.now
        )
        w.finish(f"agent answer on ticket #{tid} ({w.link.via})")
        return
    if w.actor.is_agent:
        # A From that names an agent without proof: kept, never obeyed (SPEC §4).
        tickets.add_event(
            w.s,
            tid,
            "unauthenticated-agent",
            actor=w.sender,
            now=w.now,
            note="mail from an agent address without a signed reply address or trusted DKIM/SPF",
        )
    if w.sender == w.ticket.requester or w.sender in _participants(w):
        tickets.add_participants(w.s, tid, _copied(w), role="cc")
    old = w.ticket.status
    # A forged agent From proves nothing, so it changes nothing (SPEC §4).
    new = old if w.actor.is_agent else workflow.after_customer_reply(old)
    if new != old:
        tickets.set_status(w.s, w.ticket, new, actor=w.sender, now=w.now)
    notify.on_customer_reply(
        w.s, w.cfg, w.ticket, w.message, w.parsed, may_auto_reply=_may_auto_reply(w), now=w.now
    )
    w.finish(f"reply on ticket #{tid} ({w.link.via})")


STEPS: list[Callable[[Work], None]] = [
    skip_duplicate,
    classify_mail,
    find_ticket,
    authenticate_sender,
    reach_closed_ticket,
    record_bounce,
    record_automated,
    open_ticket,
    add_to_ticket,
]


# ------------------------------------------------------------------ helpers
def _bounced_ticket(w: Work, report: BounceReport | None) -> int | None:
    """Our envelope sender (VERP), else the bounced Message-ID, else ordinary linking."""
    template = w.cfg.outbound.envelope_sender
    if template and "{token}" in template:
        for rcpt in json.loads(w.item.rcpt_to):
            row_id = outbox.item_id_from_bounce_address(rcpt, template)
            row = outbox.get(w.s, row_id) if row_id is not None else None
            if row is not None and row.ticket_id is not None:
                return row.ticket_id
    if report is not None and report.original_message_id:
        found = tickets.ticket_for_message_ids(w.s, [report.original_message_id])
        if found is not None:
            return found
    return w.link.ticket_id if w.link is not None else None


def _queue_of(w: Work) -> str:
    """The item's queue: given by its edge, else its first recipient that is ours."""
    if w.item.queue:
        return w.item.queue
    for address in [*json.loads(w.item.rcpt_to), *w.parsed.to, *w.parsed.cc]:
        q = w.cfg.queue_for_address(address)
        if q is not None:
            return q.name
    return w.cfg.queue[0].name


def _copied(w: Work) -> list[tuple[str, str]]:
    """People the sender copied (To/Cc) who are neither us nor agents."""
    own, agents = w.cfg.own_addresses, w.cfg.agent_emails
    people: list[tuple[str, str]] = []
    for address in (*w.parsed.to, *w.parsed.cc):
        a = address.lower()
        ours = a in own or w.cfg.queue_for_address(a) is not None
        if a and a != w.sender and a not in agents and not ours:
            people.append((a, ""))
    return people


def _participants(w: Work) -> set[str]:
    assert w.ticket is not None and w.ticket.id is not None
    return {p.email for p in tickets.participants(w.s, w.ticket.id)}


def _may_auto_reply(w: Work) -> bool:
    assert w.disposition is not None
    return w.disposition.may_auto_reply and bool(w.parsed.from_addr)


def _store_message(w: Work) -> TicketMessage:
    """The incoming message on the ticket, with its attachments saved."""
    assert w.ticket is not None
    p = w.parsed
    msg = tickets.add_message(
        w.s,
        w.ticket,
        message_id=w.message_id,
        direction="in",
        from_addr=w.sender,
        from_name=p.from_name,
        to=p.to,
        cc=p.cc,
        subject=p.subject,
        body=p.text,
        # Stored sanitised: nothing active is kept or ever re-sent (allow-list, nh3).
        html=sanitize_html(p.html) if p.html else None,
        spool_item_id=w.item.id,
        now=w.now,
    )
    root = w.cfg.tickets.attachment_dir
    for att in p.attachments:
        digest = attachments.save(root, att.payload)
        tickets.add_attachment(
            w.s,
            msg,
            filename=att.filename,
            content_type=att.content_type,
            size=len(att.payload),
            sha256=digest,
        )
    if p.defects:
        assert w.ticket.id is not None
        tickets.add_event(w.s, w.ticket.id, "parse-notes", now=w.now, notes=list(p.defects))
    return msg
