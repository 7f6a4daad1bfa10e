"""The outbox: rendered outgoing messages, delivered by the sender, each once.

A notification is rendered once, in the transaction of the ticket change that
caused it, into a row with a fixed Message-ID and a dedupe key (a second
enqueue with the same key is a no-op). The sender claims due rows with a
*lease*: claiming pushes `next_attempt_at` forward by the lease and commits,
delivery happens outside any transaction (a hanging smarthost must not hold
the SQLite write lock), and the row is then marked sent, retried or failed.
A sender that dies between claim and mark leaves a row that becomes due
again when its lease ends: delivery is at least once, and a crash re-sends a
row at most once more, with the same Message-ID so receivers can dedupe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailtix.core import bounce
from mailtix.store import tickets
from mailtix.store.tables import OutboxItem, TicketMessage

DEFAULT_LEASE = timedelta(minutes=5)
TOKEN_PLACEHOLDER = "{token}"


@dataclass(frozen=True)
class History:
    """How an outgoing message shows in its ticket's history (one per Message-ID)."""

    from_addr: str
    from_name: str
    to: tuple[str, ...]
    subject: str
    body: str
    cc: tuple[str, ...] = ()
    html: str | None = None
    internal: bool = False


@dataclass(frozen=True)
class Claim:
    """A row taken for delivery: everything the sender needs, detached from the session."""

    id: int
    ticket_id: int | None
    kind: str
    message_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes
    attempts: int  # including this one


_OUTBOX = {
    name: dialect.insert(OutboxItem.__table__)  # type: ignore[attr-defined]
    .on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(OutboxItem.__table__.c.id)  # type: ignore[attr-defined]
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_HISTORY = insert(TicketMessage.__table__)  # type: ignore[attr-defined]


def exists(s: Session, dedupe_key: str) -> bool:
    """Whether a row with dedupe_key was ever enqueued."""
    stmt = select(OutboxItem.id).where(OutboxItem.dedupe_key == dedupe_key)
    return s.execute(stmt).first() is not None


def enqueue(
    s: Session,
    *,
    ticket_id: int | None,
    kind: str,
    dedupe_key: str,
    message_id: str,
    envelope_from: str,
    recipients: Sequence[str],
    raw: bytes,
    now: datetime,
    history: History | None = None,
) -> OutboxItem | None:
    """Add a row due now; None if dedupe_key is taken. Caller commits (see `put`)."""
    item_id = put(
        s,
        ticket_id=ticket_id,
        kind=kind,
        dedupe_key=dedupe_key,
        message_id=message_id,
        envelope_from=envelope_from,
        recipients=recipients,
        raw=raw,
        now=now,
        history=history,
    )
    return s.get(OutboxItem, item_id) if item_id is not None else None


def put(
    s: Session,
    *,
    ticket_id: int | None,
    kind: str,
    dedupe_key: str,
    message_id: str,
    envelope_from: str,
    recipients: Sequence[str],
    raw: bytes,
    now: datetime,
    history: History | None = None,
) -> int | None:
    """Add a row due now and return its id; None if dedupe_key is taken. Caller commits.

    The Message-ID is recorded in ThreadRef (so replies to it thread back,
    SPEC §3) and, when history is given, the message in the ticket's history.
    """
    values = {
        "ticket_id": ticket_id,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "message_id": message_id,
        "envelope_from": envelope_from,
        "recipients": json.dumps(list(recipients)),
        "raw": raw,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "last_error": None,
        "sent_at": None,
    }
    item_id = s.execute(_OUTBOX[s.get_bind().dialect.name], values).scalar()
    if item_id is None:
        return None
    if ticket_id is not None:
        tickets.add_thread_ref(s, message_id, ticket_id)
        if history is not None:
            s.execute(_HISTORY, _history_row(ticket_id, message_id, history, now))
    return int(item_id)


def _history_row(ticket_id: int, message_id: str, h: History, now: datetime) -> dict[str, object]:
    return {
        "ticket_id": ticket_id,
        "spool_item_id": None,
        "message_id": message_id,
        "direction": "out",
        "internal": h.internal,
        "from_addr": h.from_addr,
        "from_name": h.from_name,
        "to_addrs": json.dumps(list(h.to)),
        "cc_addrs": json.dumps(list(h.cc)),
        "subject": h.subject,
        "body": h.body,
        "html": h.html,
        "created_at": now,
    }


def claim_due(
    s: Session, now: datetime, limit: int, lease: timedelta = DEFAULT_LEASE
) -> list[Claim]:
    """Take up to limit due rows for delivery, oldest due first; they stay leased until now+lease.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent senders take disjoint
    rows. SQLite: the write transaction (BEGIN IMMEDIATE) already serialises them.
    """
    stmt = (
        select(OutboxItem)
        .where(OutboxItem.state == "pending", OutboxItem.next_attempt_at <= now)  # type: ignore[arg-type]
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    claims = []
    for item in s.scalars(stmt):
        item.attempts += 1
        item.next_attempt_at = now + lease
        s.add(item)
        assert item.id is not None
        claims.append(
            Claim(
                id=item.id,
                ticket_id=item.ticket_id,
                kind=item.kind,
                message_id=item.message_id,
                envelope_from=item.envelope_from,
                recipients=tuple(json.loads(item.recipients)),
                raw=item.raw,
                attempts=item.attempts,
            )
        )
    return claims


def thread_ids(
    s: Session, ticket_id: int, *, customer_view: bool, agents: frozenset[str]
) -> list[str]:
    """Message-IDs of ticket's history in order, as one audience saw it.

    The customer's view leaves out internal mail and what agents sent us
    (they only saw our relay of it), so References name only what they have.
    """
    stmt = (
        select(
            TicketMessage.message_id,
            TicketMessage.direction,
            TicketMessage.internal,
            TicketMessage.from_addr,
        )
        .where(TicketMessage.ticket_id == ticket_id)
        .order_by(TicketMessage.created_at, TicketMessage.id)  # type: ignore[arg-type]
    )
    out: list[str] = []
    for message_id, direction, internal, from_addr in s.execute(stmt):
        if customer_view and (internal or (direction == "in" and from_addr.lower() in agents)):
            continue
        if message_id not in out:
            out.append(message_id)
    return out


def next_due(s: Session) -> datetime | None:
    """When the earliest pending row falls due (leased rows included), or None."""
    stmt = select(func.min(OutboxItem.next_attempt_at)).where(OutboxItem.state == "pending")
    return s.execute(stmt).scalar()


def _set(s: Session, item_id: int, **values: object) -> bool:
    stmt = (
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.state == "pending")  # type: ignore[arg-type]
        .values(**values)
    )
    return bool(s.execute(stmt).rowcount)  # type: ignore[attr-defined]


def mark_sent(s: Session, item_id: int, now: datetime) -> bool:
    """The smarthost accepted the row (250 after DATA); False if it was not pending."""
    return _set(s, item_id, state="sent", sent_at=now, last_error=None)


def mark_sent_many(s: Session, item_ids: Sequence[int], now: datetime) -> int:
    """mark_sent for several rows in one statement; returns how many were pending."""
    stmt = (
        update(OutboxItem)
        .where(OutboxItem.id.in_(item_ids), OutboxItem.state == "pending")  # type: ignore[union-attr,arg-type]
        .values(state="sent", sent_at=now, last_error=None)
    )
    return int(s.execute(stmt).rowcount)  # type: ignore[attr-defined]


def mark_retry(s: Session, item_id: int, next_at: datetime, error: str) -> bool:
    """A temporary failure: try again at next_at."""
    return _set(s, item_id, next_attempt_at=next_at, last_error=error)


def mark_failed(s: Session, item_id: int, error: str, now: datetime) -> bool:
    """A permanent failure (or too many attempts): never try again."""
    return _set(s, item_id, state="failed", last_error=error)


def get(s: Session, item_id: int) -> OutboxItem | None:
    """The row with this id, if any."""
    return s.get(OutboxItem, item_id)


def counts(s: Session) -> dict[str, int]:
    """Number of rows per state."""
    rows = s.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state))
    return {state: n for state, n in rows}


# -- VERP (envelope sender per row, so a bounce names the row it bounced) --
def verp_token(item_id: int) -> str:
    """The token that stands for an outbox row in a VERP envelope sender."""
    return f"o{item_id}"


def envelope_sender(template: str, item_id: int) -> str:
    """template with "{token}" replaced by the row's token: "bounces+{token}@x" → "bounces+o7@x"."""
    return template.replace(TOKEN_PLACEHOLDER, verp_token(item_id))


def item_id_for_token(token: str) -> int | None:
    """The outbox row a VERP token stands for (see core.bounce.verp_token), or None."""
    token = token.lower()  # MTAs may fold the case of local parts
    if not token.startswith("o") or not token[1:].isdigit() or len(token) > 19:
        return None
    return int(token[1:])


def item_id_from_bounce_address(address: str, template: str) -> int | None:
    """The outbox row a bounce was addressed to, by the envelope sender template; or None."""
    token = bounce.verp_token(address, template)
    return item_id_for_token(token) if token is not None else None
