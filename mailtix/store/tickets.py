"""Tickets, their participants, messages, events and thread references.

Functions take an open session and never commit: the caller's transaction
(one per spool item) decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from mailtix.core.linking import TicketFacts
from mailtix.store.tables import (
    Attachment,
    Event,
    Participant,
    ThreadRef,
    Ticket,
    TicketMessage,
)

# The hot inserts are Core statements built once: an ORM object per row costs
# a pydantic construction and a unit-of-work flush (bench/runner.py).
_MESSAGE = insert(TicketMessage.__table__).returning(TicketMessage.__table__.c.id)  # type: ignore[attr-defined]
_PARTICIPANT = insert(Participant.__table__)  # type: ignore[attr-defined]
_EVENT = insert(Event.__table__)  # type: ignore[attr-defined]
_THREAD_REF = {
    name: dialect.insert(ThreadRef.__table__).on_conflict_do_nothing(  # type: ignore[attr-defined]
        index_elements=["message_id"]
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _columns(row: SQLModel) -> dict[str, Any]:
    """The column values of a table object (its defaults filled in), id left out."""
    return {c.name: getattr(row, c.name) for c in row.__table__.c if c.name != "id"}  # type: ignore[attr-defined]




def create(
    s: Session,
    *,
    subject: str,
    queue: str,
    requester: str,
    requester_name: str,
    now: datetime,
    follows: int | None = None,
    language: str | None = None,
) -> Ticket:
    """A new ticket (status new), its requester recorded as a participant."""
    ticket = Ticket(
        subject=subject,
        queue=queue,
        requester=requester,
        requester_name=requester_name,
        created_at=now,
        updated_at=now,
        follows_ticket_id=follows,
        language=language,
    )
    # An ORM insert: a savepoint rollback (the runner's per-item one) must
    # take the object out of the session again, or SQLite's reused id clashes.
    s.add(ticket)
    s.flush()
    assert ticket.id is not None
    if requester:
        # A new ticket has no participants yet: nothing to read before this insert.
        row = {"ticket_id": ticket.id, "email": requester.lower(), "name": requester_name[:320]}
        s.execute(_PARTICIPANT, {**row, "role": "requester"})
    return ticket


def get(s: Session, ticket_id: int) -> Ticket | None:
    """The ticket with this id, if any."""
    return s.get(Ticket, ticket_id)


def resolve_merged(s: Session, ticket_id: int) -> Ticket | None:
    """The ticket that ticket_id now lives in, following merges (bounded, cycle-safe)."""
    seen: set[int] = set()
    ticket = s.get(Ticket, ticket_id)
    while ticket is not None and ticket.merged_into_id and ticket.id not in seen:
        seen.add(ticket.id or 0)
        ticket = s.get(Ticket, ticket.merged_into_id)
    return ticket


def facts(s: Session, ticket_id: int | None) -> TicketFacts | None:
    """What linking needs to know of a ticket (after merges), or None if there is none."""
    if ticket_id is None:
        return None
    ticket = resolve_merged(s, ticket_id)
    if ticket is None or ticket.id is None:
        return None
    emails = s.scalars(select(Participant.email).where(Participant.ticket_id == ticket.id))
    return TicketFacts(
        id=ticket.id,
        status=ticket.status,
        requester=ticket.requester,
        participants=frozenset(e.lower() for e in emails) | {ticket.requester},
    )


def ticket_for_message_ids(s: Session, message_ids: Sequence[str]) -> int | None:
    """The ticket of the first of message_ids that we stored or sent (order = preference)."""
    if not message_ids:
        return None
    rows = dict(
        s.execute(
            select(ThreadRef.message_id, ThreadRef.ticket_id).where(
                ThreadRef.message_id.in_(list(message_ids))  # type: ignore[attr-defined]
            )
        ).all()
    )
    for mid in message_ids:
        if mid in rows:
            return int(rows[mid])
    return None


def has_incoming(s: Session, message_id: str) -> int | None:
    """The ticket already holding an incoming message with this Message-ID, if any."""
    stmt = select(TicketMessage.ticket_id).where(
        TicketMessage.message_id == message_id, TicketMessage.direction == "in"
    )
    return s.scalars(stmt.limit(1)).first()


def add_thread_ref(s: Session, message_id: str, ticket_id: int) -> None:
    """Remember that message_id belongs to ticket_id (first writer wins)."""
    stmt = _THREAD_REF[s.get_bind().dialect.name]
    s.execute(stmt, {"message_id": message_id, "ticket_id": ticket_id})


def add_participants(
    s: Session, ticket_id: int, people: Iterable[tuple[str, str]], *, role: str = "cc"
) -> list[str]:
    """Add (email, name) pairs not yet on the ticket; returns the emails added."""
    people = list(people)
    if not people:
        return []
    existing = set(s.scalars(select(Participant.email).where(Participant.ticket_id == ticket_id)))
    rows: list[dict[str, Any]] = []
    for email, name in people:
        email = email.lower()
        if email and email not in existing:
            rows.append({"ticket_id": ticket_id, "email": email, "name": name[:320], "role": role})
            existing.add(email)
    if rows:
        s.execute(_PARTICIPANT, rows)
    return [r["email"] for r in rows]


def participants(s: Session, ticket_id: int, role: str | None = None) -> list[Participant]:
    """The people on a ticket, optionally only those with role."""
    stmt = select(Participant).where(Participant.ticket_id == ticket_id)
    if role is not None:
        stmt = stmt.where(Participant.role == role)
    return list(s.scalars(stmt.order_by(Participant.id)))  # type: ignore[arg-type]


def add_message(
    s: Session,
    ticket: Ticket,
    *,
    message_id: str,
    direction: str,
    from_addr: str,
    from_name: str = "",
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    subject: str,
    body: str,
    html: str | None = None,
    internal: bool = False,
    spool_item_id: int | None = None,
    now: datetime,
) -> TicketMessage:
    """Append a message to the ticket's history and remember its Message-ID for threading."""
    assert ticket.id is not None
    msg = TicketMessage(
        ticket_id=ticket.id,
        spool_item_id=spool_item_id,
        message_id=message_id,
        direction=direction,
        internal=internal,
        from_addr=from_addr[:320],
        from_name=from_name[:320],
        to_addrs=json.dumps(list(to)),
        cc_addrs=json.dumps(list(cc)),
        subject=subject,
        body=body,
        html=html,
        created_at=now,
    )
    # Inserted with Core; msg is returned with its id but outside the session
    # (attached, it would outlive a savepoint rollback; see create).
    msg.id = s.execute(_MESSAGE, _columns(msg)).scalar_one()
    ticket.updated_at = now
    s.add(ticket)
    add_thread_ref(s, message_id, ticket.id)
    return msg


def add_attachment(
    s: Session, message: TicketMessage, *, filename: str, content_type: str, size: int, sha256: str
) -> Attachment:
    """Record a file (already stored content-addressed) on a message."""
    assert message.id is not None
    row = Attachment(
        message_id=message.id,
        filename=filename,
        content_type=content_type,
        size=size,
        sha256=sha256,
    )
    s.add(row)
    return row


def add_event(
    s: Session,
    ticket_id: int,
    kind: str,
    *,
    actor: str = "",
    now: datetime,
    **detail: Any,
) -> None:
    """Record something that happened to a ticket."""
    s.execute(
        _EVENT,
        {
            "ticket_id": ticket_id,
            "at": now,
            "kind": kind,
            "actor": actor[:320],
            "detail": json.dumps(detail, default=str, ensure_ascii=False),
        },
    )


def set_status(s: Session, ticket: Ticket, status: str, *, actor: str, now: datetime) -> bool:
    """Change the status (recording an event and the resolved/closed times). True if changed."""
    if ticket.status == status:
        return False
    old = ticket.status
    ticket.status = status
    ticket.updated_at = now
    if status == "resolved":
        ticket.resolved_at = now
    if status == "closed":
        ticket.closed_at = now
    if status in ("open", "new", "pending"):
        ticket.resolved_at = None
        ticket.closed_at = None
    s.add(ticket)
    assert ticket.id is not None
    add_event(s, ticket.id, "status", actor=actor, now=now, old=old, new=status)
    return True


def find(
    s: Session, *, status: str | None = None, queue: str | None = None, limit: int | None = None
) -> list[Ticket]:
    """Tickets, newest first, optionally filtered by status and queue."""
    stmt = select(Ticket)
    if status is not None:
        stmt = stmt.where(Ticket.status == status)
    if queue is not None:
        stmt = stmt.where(Ticket.queue == queue)
    stmt = stmt.order_by(Ticket.id.desc())  # type: ignore[union-attr]
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(s.scalars(stmt))


def messages(s: Session, ticket_id: int) -> list[TicketMessage]:
    """A ticket's messages in order."""
    stmt = select(TicketMessage).where(TicketMessage.ticket_id == ticket_id)
    return list(s.scalars(stmt.order_by(TicketMessage.id)))  # type: ignore[arg-type]


def events(s: Session, ticket_id: int) -> list[Event]:
    """A ticket's events in order."""
    stmt = select(Event).where(Event.ticket_id == ticket_id)
    return list(s.scalars(stmt.order_by(Event.id)))  # type: ignore[arg-type]


def attachments_of(s: Session, message_ids: Sequence[int]) -> dict[int, list[Attachment]]:
    """Attachments per message id."""
    out: dict[int, list[Attachment]] = {}
    if not message_ids:
        return out
    stmt = select(Attachment).where(Attachment.message_id.in_(list(message_ids)))  # type: ignore[attr-defined]
    for att in s.scalars(stmt.order_by(Attachment.id)):  # type: ignore[arg-type]
        out.setdefault(att.message_id, []).append(att)
    return out
