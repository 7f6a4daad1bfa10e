"""Notifications caused by ticket changes, rendered once into outbox rows.

Called by services.ingest inside the item's transaction, so a ticket change
and the mail it causes commit together; the sender delivers them later.

One logical mail has one Message-ID (recorded in ThreadRef and, once, in the
ticket's history) and one outbox row per recipient: each copy carries that
recipient's own signed Reply-To (SPEC §3), the way Mailman personalises a
list post without changing its Message-ID. Dedupe keys are derived from
(kind, ticket, cause, recipient), so running the same cause twice enqueues
nothing new and renders nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlmodel import Session

from mailtix.config import Config, QueueConfig
from mailtix.core import replyaddr
from mailtix.core.classify import LOOP_HEADER
from mailtix.core.message import ParsedMessage
from mailtix.core.quotes import REPLY_MARKER, strip_quoted
from mailtix.core.subject import format_tag, tagged_subject
from mailtix.core.workflow import after_agent_answer
from mailtix.render.mime import Address, Attachment, Headers, compose, new_message_id
from mailtix.render.templates import templates_for
from mailtix.store import bounces, outbox, ratelimit, tickets
from mailtix.store.tables import Ticket, TicketMessage

log = logging.getLogger(__name__)

# RFC 3834 §2 / SPEC §6: local parts that are machines, never to be answered.
_MACHINE_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "noreply", "no-reply"})
FAILURE_KIND = "delivery_failed"
# Statuses the requester is told about.
_STATUS_MAIL = frozenset({"resolved", "closed"})
_MAX_REFERENCES = 10  # RFC 5322 §3.6.4 allows trimming; keep the root and the newest


@dataclass(frozen=True)
class _Recipient:
    email: str
    name: str
    language: str | None


# ------------------------------------------------------------------ public
def on_new_ticket(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    msg: TicketMessage,
    parsed: ParsedMessage,
    *,
    may_auto_reply: bool,
    now: datetime,
) -> None:
    """A ticket was opened by msg: acknowledge the requester, tell the queue's agents."""
    _acknowledge(s, cfg, ticket, msg, may_auto_reply=may_auto_reply, now=now)
    _notify_agents(
        s,
        cfg,
        ticket,
        msg,
        parsed,
        kind="agent_new",
        body=parsed.text,
        automated=not may_auto_reply,
        now=now,
    )


def on_customer_reply(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    msg: TicketMessage,
    parsed: ParsedMessage,
    *,
    may_auto_reply: bool,
    now: datetime,
) -> None:
    """A requester or participant wrote into ticket: tell the assignee or the queue's agents."""
    _notify_agents(
        s,
        cfg,
        ticket,
        msg,
        parsed,
        kind="agent_reply",
        body=strip_quoted(parsed.text),
        automated=not may_auto_reply,
        now=now,
    )


def reply_text(parsed: ParsedMessage) -> str:
    """What an agent wrote in a reply, quoted history removed (commands still on top)."""
    return strip_quoted(parsed.text)


def on_agent_answer(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    msg: TicketMessage,
    parsed: ParsedMessage,
    *,
    agent: str,
    now: datetime,
    body: str | None = None,
) -> None:
    """An authenticated agent answered by mail: relay the answer to the requester and Cc's.

    body is the text to relay when the caller already took SPEC §4 command
    lines off the top of `reply_text(parsed)`; by default it is reply_text.
    An empty answer (a reply of commands only) sends nothing.
    """
    text = reply_text(parsed) if body is None else body.strip()
    if not text:
        return
    agent_cfg = cfg.agent_by_email(agent)
    agent_name = (agent_cfg.name if agent_cfg else "") or agent.split("@", 1)[0]
    recipients = _customers(s, cfg, ticket, now)
    attachments = [Attachment(a.filename, a.content_type, a.payload) for a in parsed.attachments]
    _send(
        s,
        cfg,
        ticket,
        kind="answer",
        cause=msg.message_id,
        recipients=recipients,
        context={"agent_name": agent_name, "body": text},
        from_name=f"{agent_name} ({cfg.outbound.from_name})",
        in_reply_to=None,
        customer_view=True,
        attachments=attachments,
        now=now,
        history_body=text,
    )
    if not recipients:
        return
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.updated_at = now
    s.add(ticket)
    old = ticket.status
    new = after_agent_answer(old)
    if tickets.set_status(s, ticket, new, actor=agent, now=now):
        on_status_change(s, cfg, ticket, old, new, actor=agent, now=now)


def on_status_change(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    old: str,
    new: str,
    *,
    actor: str,
    now: datetime,
) -> None:
    """The status of ticket changed: tell the requester when it is resolved or closed."""
    if new == old or new not in _STATUS_MAIL:
        return
    requester = _Recipient(ticket.requester, ticket.requester_name, _customer_language(cfg, ticket))
    if not _may_mail(s, cfg, ticket, requester.email, now, limits="notice"):
        return
    # Mail caused by an agent answers something; a job's (auto-close) is scheduled.
    scheduled = actor.lower() not in cfg.agent_emails
    _send(
        s,
        cfg,
        ticket,
        kind=new,
        cause=f"{old}>{new}@{now.isoformat()}",
        recipients=[requester],
        context={},
        in_reply_to=None,
        customer_view=True,
        now=now,
        auto_submitted="auto-generated" if scheduled else "auto-replied",
    )


def on_delivery_failed(
    s: Session,
    cfg: Config,
    *,
    ticket_id: int | None,
    outbox_id: int,
    kind: str,
    message_id: str,
    recipients: Sequence[str],
    error: str,
    now: datetime,
) -> None:
    """A row failed for good: record it on its ticket and tell the ticket's agents.

    Never about a failed failure notice, so two broken mailboxes cannot loop.
    """
    ticket = tickets.get(s, ticket_id) if ticket_id is not None else None
    if ticket is None or ticket.id is None:
        log.warning("outbox %s (%s) failed for good: %s", outbox_id, kind, error)
        return
    tickets.add_event(
        s,
        ticket.id,
        "delivery-failed",
        now=now,
        outbox_id=outbox_id,
        mail=kind,
        message_id=message_id,
        recipients=list(recipients),
        error=error,
    )
    if kind == FAILURE_KIND:
        return
    failed = {r.lower() for r in recipients}
    agents = [a for a in _agents(cfg, ticket) if a.email.lower() not in failed]
    _send(
        s,
        cfg,
        ticket,
        kind=FAILURE_KIND,
        cause=f"outbox:{outbox_id}",
        recipients=agents,
        context={
            "failed_kind": kind,
            "failed_message_id": message_id,
            "failed_to": list(recipients),
            "error": error,
        },
        in_reply_to=message_id,
        customer_view=False,
        internal=True,
        now=now,
        auto_submitted="auto-generated",
    )


# ------------------------------------------------------------------ who
def _acknowledge(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    msg: TicketMessage,
    *,
    may_auto_reply: bool,
    now: datetime,
) -> None:
    to = ticket.requester
    if not may_auto_reply:
        _suppressed(s, ticket, now, to, "classified as automated mail")
        return
    if not _may_mail(s, cfg, ticket, to, now, limits="reply"):
        return
    requester = _Recipient(to, ticket.requester_name, _customer_language(cfg, ticket))
    _send(
        s,
        cfg,
        ticket,
        kind="ack",
        cause=msg.message_id,
        recipients=[requester],
        context={},
        in_reply_to=msg.message_id,
        customer_view=True,
        now=now,
    )


def _may_mail(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    to: str,
    now: datetime,
    *,
    limits: Literal["reply", "notice"] | None = None,
) -> bool:
    """Whether automatic mail may go to address `to` (SPEC §6); records why not.

    limits: "reply" (an answer to mail from `to`) passes the loop breaker and
    the per-ticket and per-address windows; "notice" (a status notice) the
    per-ticket window; None (an agent's answer relayed) none of them.
    """
    reason = _machine_reason(cfg, to) or _bounce_reason(s, to)
    if reason is None and limits is not None:
        reason = _limit_reason(s, cfg, ticket, to, now, limits)
        if reason is None:
            ratelimit.record(s, to, now, ticket.id, limits)
    if reason is not None:
        _suppressed(s, ticket, now, to, reason)
        return False
    return True


def _bounce_reason(s: Session, address: str) -> str | None:
    row = bounces.suppressed(s, address)
    if row is None:
        return None
    return f"address suppressed after {row.hard_bounces} hard bounces (last: {row.last_status})"


def _limit_reason(
    s: Session, cfg: Config, ticket: Ticket, to: str, now: datetime, kind: str
) -> str | None:
    """The loop breaker, then the per-ticket and per-address windows.

    The breaker: we are answering mail from `to`; if we already sent it
    automatic mail within the loop window, it wrote back at machine speed
    (another helpdesk, an auto-responder without RFC 3834 headers): stop
    here, so two systems that take each other for customers exchange at
    most 3 messages.
    """
    limits = cfg.limits
    window = timedelta(seconds=limits.loop_window_seconds)
    seen = ratelimit.recent(s, to, ticket.id, now, window)
    if kind == "reply" and seen.to_address_in_window > 0:
        return (
            f"loop breaker: {to} wrote again within {int(window.total_seconds())} s "
            "of our last automatic mail to it"
        )
    per_ticket = limits.auto_replies_per_ticket_per_hour
    if seen.on_ticket_in_hour >= per_ticket:
        return f"rate limit: {per_ticket} automatic mails an hour on this ticket"
    per_address = limits.auto_replies_per_address_per_hour
    if kind == "reply" and seen.to_address_in_hour >= per_address:
        return f"rate limit: {per_address} automatic mails an hour to this address"
    return None


def _machine_reason(cfg: Config, address: str) -> str | None:
    addr = address.strip().lower()
    local, at, _domain = addr.rpartition("@")
    if not addr or not at or not local:
        return "null or invalid sender"
    if local in _MACHINE_LOCAL_PARTS:
        return f"machine address {local}@"
    if addr in cfg.own_addresses or cfg.queue_for_address(addr) is not None:
        return "one of our own addresses"
    return None


def _suppressed(s: Session, ticket: Ticket, now: datetime, to: str, reason: str) -> None:
    assert ticket.id is not None
    tickets.add_event(s, ticket.id, "auto-reply-suppressed", now=now, to=to, reason=reason)


def _agents(cfg: Config, ticket: Ticket) -> list[_Recipient]:
    """The assignee, else every agent of the ticket's queue."""
    if ticket.assignee:
        a = cfg.agent_by_email(ticket.assignee)
        return [_Recipient(ticket.assignee, a.name if a else "", a.language if a else None)]
    return [_Recipient(a.email, a.name, a.language) for a in cfg.agent if ticket.queue in a.queues]


def _customers(s: Session, cfg: Config, ticket: Ticket, now: datetime) -> list[_Recipient]:
    """The requester and the Cc'd participants, never an agent or one of our addresses."""
    lang = _customer_language(cfg, ticket)
    out = [_Recipient(ticket.requester, ticket.requester_name, lang)]
    assert ticket.id is not None
    out += [_Recipient(p.email, p.name, lang) for p in tickets.participants(s, ticket.id, "cc")]
    seen: set[str] = set()
    kept = []
    for r in out:
        key = r.email.lower()
        if key in seen or key in cfg.agent_emails or _machine_reason(cfg, key) is not None:
            continue
        if (why := _bounce_reason(s, key)) is not None:
            _suppressed(s, ticket, now, key, why)
            continue
        seen.add(key)
        kept.append(r)
    return kept


def _notify_agents(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    msg: TicketMessage,
    parsed: ParsedMessage,
    *,
    kind: str,
    body: str,
    automated: bool,
    now: datetime,
) -> None:
    author = msg.from_addr.lower()
    agents = []
    for agent in _agents(cfg, ticket):
        if agent.email.lower() == author:
            continue
        # Notices to agents are never rate-limited (a missed notice is a missed
        # customer), but an agent address that hard-bounces is not written to.
        if (why := _bounce_reason(s, agent.email)) is not None:
            _suppressed(s, ticket, now, agent.email, why)
            continue
        agents.append(agent)
    context = {
        "author_name": msg.from_name or parsed.from_name or author,
        "author_email": author,
        "body": body,
        "attachments": [a.filename for a in parsed.attachments],
        "automated": automated,
        "marker": REPLY_MARKER,
    }
    _send(
        s,
        cfg,
        ticket,
        kind=kind,
        cause=msg.message_id,
        recipients=agents,
        context=context,
        in_reply_to=msg.message_id,
        customer_view=False,
        internal=True,
        now=now,
        history_body=body,
    )


# ------------------------------------------------------------------ how
def _send(
    s: Session,
    cfg: Config,
    ticket: Ticket,
    *,
    kind: str,
    cause: str,
    recipients: Sequence[_Recipient],
    context: dict[str, Any],
    in_reply_to: str | None,
    customer_view: bool,
    now: datetime,
    from_name: str | None = None,
    internal: bool = False,
    attachments: Sequence[Attachment] = (),
    auto_submitted: str = "auto-replied",
    history_body: str | None = None,
) -> None:
    """Render and enqueue one logical mail, one row per recipient, unless already done."""
    if not recipients or ticket.id is None:
        return
    keys = [_dedupe_key(kind, ticket.id, cause, r.email) for r in recipients]
    queue_addr = _queue_address(cfg, ticket)
    domain = queue_addr.rpartition("@")[2]
    message_id = new_message_id(domain, ticket.id)
    thread = outbox.thread_ids(s, ticket.id, customer_view=customer_view, agents=cfg.agent_emails)
    parent = in_reply_to or (thread[-1] if thread else None)
    references = _references(thread, parent)
    sender = Address(queue_addr, from_name or cfg.outbound.from_name)
    tpl = templates_for(cfg.templates.directory, cfg.templates.default_language)
    tagged = tagged_subject(cfg.tickets.tag_prefix, ticket.id, ticket.subject, reply=True)
    to_header = _to_header(recipients, customer_view)
    envelope_from = cfg.outbound.envelope_sender or cfg.outbound.from_address
    first = True
    for recipient, key in zip(recipients, keys, strict=True):
        reply_to = replyaddr.make(queue_addr, ticket.id, recipient.email, cfg.reply_secret)
        ctx = {
            **context,
            "ticket": _ticket_view(cfg, ticket),
            "brand": cfg.outbound.from_name,
            "recipient_name": recipient.name,
            "reply_address": reply_to,
        }
        rendered = tpl.render(kind, recipient.language, ctx)
        subject = rendered.subject or tagged
        to, cc = to_header if to_header else ((Address(recipient.email, recipient.name),), ())
        headers = Headers(
            from_=sender,
            to=to,
            cc=cc,
            subject=subject,
            message_id=message_id,
            date=now,
            reply_to=Address(reply_to),
            in_reply_to=parent,
            references=references,
            auto_submitted=auto_submitted,
            extra=(
                (LOOP_HEADER.title(), cfg.outbound.from_address),
                # Exchange/Outlook: send no out-of-office or other auto-replies (MS-OXCMAIL).
                ("X-Auto-Response-Suppress", "All"),
            ),
        )
        raw = compose(headers, rendered.text, rendered.html, attachments)
        history = None
        if first:
            history = outbox.History(
                from_addr=sender.email,
                from_name=sender.name,
                to=tuple(r.email for r in recipients),
                subject=subject,
                body=history_body if history_body is not None else rendered.text,
                internal=internal,
            )
        # The first row's dedupe key stands for the whole mail: if it is taken,
        # this cause was handled before and nothing more is enqueued (the
        # unique constraint decides, so no SELECT is spent on the usual case).
        item_id = outbox.put(
            s,
            ticket_id=ticket.id,
            kind=kind,
            dedupe_key=key,
            message_id=message_id,
            envelope_from=envelope_from,
            recipients=[recipient.email],
            raw=raw,
            now=now,
            history=history,
        )
        if first and item_id is None:
            return
        first = False


def _to_header(
    recipients: Sequence[_Recipient], customer_view: bool
) -> tuple[tuple[Address, ...], tuple[Address, ...]] | None:
    """Customers all see who is on the conversation (To: requester, Cc: the rest);
    each agent's notice is addressed to that agent alone (None: per recipient)."""
    if not customer_view:
        return None
    addrs = tuple(Address(r.email, r.name) for r in recipients)
    return addrs[:1], addrs[1:]


def _references(thread: Sequence[str], parent: str | None) -> tuple[str, ...]:
    ids = [m for m in thread if m]
    if parent and parent not in ids:
        ids.append(parent)
    if len(ids) > _MAX_REFERENCES:
        ids = ids[:1] + ids[-(_MAX_REFERENCES - 1) :]
    return tuple(ids)


def _dedupe_key(kind: str, ticket_id: int, cause: str, recipient: str) -> str:
    digest = hashlib.sha256(f"{cause}\0{recipient.lower()}".encode()).hexdigest()[:40]
    return f"{kind}:{ticket_id}:{digest}"


def _queue(cfg: Config, ticket: Ticket) -> QueueConfig | None:
    try:
        return cfg.queue_named(ticket.queue)
    except KeyError:
        return None


def _queue_address(cfg: Config, ticket: Ticket) -> str:
    q = _queue(cfg, ticket)
    return q.addresses[0] if q else cfg.outbound.from_address


def _customer_language(cfg: Config, ticket: Ticket) -> str:
    q = _queue(cfg, ticket)
    return ticket.language or (q.language if q else cfg.templates.default_language)


def _ticket_view(cfg: Config, ticket: Ticket) -> dict[str, Any]:
    assert ticket.id is not None
    return {
        "id": ticket.id,
        "tag": format_tag(cfg.tickets.tag_prefix, ticket.id),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "queue": ticket.queue,
    }
