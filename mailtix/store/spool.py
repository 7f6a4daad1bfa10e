"""The durable spool: raw messages stored at the edge, then processed once.

An edge (listener, IMAP, inject, import) calls `put_many` and acknowledges
only after its transaction committed. The runner takes items in id order,
processes each in one transaction, and marks it done in that same
transaction; a failed item is retried, then quarantined with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import defer
from sqlmodel import Session

from mailtix.core.fingerprint import dedupe_key
from mailtix.store.tables import SpoolItem


@dataclass(frozen=True)
class Envelope:
    """What the edge knows besides the bytes."""

    source: str  # smtp, lmtp, imap:<name>, inject, import
    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    queue: str | None = None


@dataclass(frozen=True)
class Stored:
    """The result of storing one message: its item id, and whether it was new."""

    item_id: int | None
    duplicate: bool
    dedupe_key: str


MAX_RETRY_DELAY = timedelta(days=1)


def _insert(session: Session) -> object:
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(SpoolItem)


def put_many(
    session: Session, messages: Sequence[tuple[bytes, Envelope]], now: datetime
) -> list[Stored]:
    """Insert messages, skipping any already spooled (same dedupe key). Caller commits."""
    if not messages:
        return []
    rows = []
    keys: list[str] = []
    for raw, env in messages:
        key, msgid = dedupe_key(raw)
        keys.append(key)
        rows.append(
            {
                "received_at": now,
                "source": env.source[:32],
                "mail_from": env.mail_from,
                "rcpt_to": json.dumps(list(env.rcpt_to)),
                "queue": env.queue,
                "raw": raw,
                "size": len(raw),
                "message_id": msgid,
                "dedupe_key": key,
                "state": "new",
                "attempts": 0,
            }
        )
    # The same message twice in one batch: keep the first.
    unique: dict[str, dict[str, object]] = {}
    for row in rows:
        unique.setdefault(str(row["dedupe_key"]), row)
    stmt = (
        _insert(session)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])  # type: ignore[attr-defined]
        .returning(SpoolItem.id, SpoolItem.dedupe_key)  # type: ignore[arg-type]
    )
    inserted: dict[str, int] = {}
    for item_id, key in session.execute(stmt, list(unique.values())):  # type: ignore[call-overload]
        inserted[key] = item_id
    out: list[Stored] = []
    seen: set[str] = set()
    for key in keys:
        new = key in inserted and key not in seen
        seen.add(key)
        out.append(Stored(inserted.get(key) if new else None, duplicate=not new, dedupe_key=key))
    return out


def pending_ids(
    session: Session, limit: int, after: int = 0, now: datetime | None = None
) -> list[int]:
    """Ids of items waiting for the runner (due at now, if given), oldest first."""
    due = (
        or_(SpoolItem.next_attempt_at.is_(None), SpoolItem.next_attempt_at <= now)  # type: ignore[union-attr, operator]
        if now is not None
        else true()
    )
    stmt = (
        select(SpoolItem.id)
        .where(SpoolItem.state == "new", SpoolItem.id > after, due)  # type: ignore[operator]
        .order_by(SpoolItem.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    return list(session.scalars(stmt))


def get(session: Session, item_id: int) -> SpoolItem | None:
    """The item with this id, if any."""
    return session.get(SpoolItem, item_id)


def lock_new(session: Session, item_id: int) -> SpoolItem | None:
    """The item, locked for this transaction, if it is still waiting.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several runners never take the
    same item. SQLite: the write transaction already holds the database lock.
    """
    # The raw bytes were read for parsing already; loaded again only if used.
    stmt = (
        select(SpoolItem)
        .options(defer(SpoolItem.raw))  # type: ignore[arg-type]
        .where(SpoolItem.id == item_id, SpoolItem.state == "new")
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).first()


def mark_done(session: Session, item: SpoolItem, ticket_id: int | None, now: datetime) -> None:
    """Record that item was processed (inside the processing transaction)."""
    item.state = "done"
    item.processed_at = now
    item.ticket_id = ticket_id
    item.attempts += 1
    session.add(item)


def quarantine(session: Session, item: SpoolItem, reason: str, now: datetime) -> None:
    """Set item aside with reason; it stays listed and replayable."""
    item.state = "quarantined"
    item.last_error = reason
    item.processed_at = now
    item.attempts += 1
    session.add(item)


def record_failure(
    session: Session,
    item_id: int,
    error: str,
    max_attempts: int,
    now: datetime,
    retry_base: timedelta = timedelta(0),
) -> str:
    """Count a failed attempt; quarantine at max_attempts. Returns the item's new state.

    The next attempt waits retry_base after the first failure, doubled after each further one.
    """
    item = session.get(SpoolItem, item_id)
    if item is None or item.state != "new":
        return item.state if item else "missing"
    item.attempts += 1
    item.last_error = error
    # Doubling, but never past a day (and never an overflow, whatever the config).
    item.next_attempt_at = now + min(retry_base * 2 ** min(item.attempts - 1, 30), MAX_RETRY_DELAY)
    if item.attempts >= max_attempts:
        item.state = "quarantined"
        item.processed_at = now
    session.add(item)
    return item.state


def quarantined(session: Session) -> list[SpoolItem]:
    """Every quarantined item, oldest first."""
    stmt = select(SpoolItem).where(SpoolItem.state == "quarantined").order_by(SpoolItem.id)  # type: ignore[arg-type]
    return list(session.scalars(stmt))


def replay(session: Session, item_id: int) -> bool:
    """Put a quarantined item back in line for the runner; False if it is not quarantined."""
    result = session.execute(
        update(SpoolItem)
        .where(SpoolItem.id == item_id, SpoolItem.state == "quarantined")  # type: ignore[arg-type]
        .values(state="new", attempts=0, next_attempt_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def counts(session: Session) -> dict[str, int]:
    """Number of items per state."""
    rows = session.execute(select(SpoolItem.state, func.count()).group_by(SpoolItem.state))
    return {state: n for state, n in rows}
