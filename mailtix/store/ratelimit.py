"""Rate limit of automatic mail per recipient address (SPEC §6, RFC 3834 §2).

A sliding window over `AutoReplyLog`: an automatic message to an address is
allowed while fewer than `limit` were sent to it in the past hour. Only mail
actually enqueued is logged, so a storm stays cut for as long as it lasts
and recovers an hour after our last answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text
from sqlmodel import Session

from mailtix.store.tables import AutoReplyLog

WINDOW = timedelta(hours=1)
_LOG = insert(AutoReplyLog.__table__)  # type: ignore[attr-defined]


def sent_recently(s: Session, address: str, now: datetime, window: timedelta = WINDOW) -> int:
    """How many automatic mails went to address in (now - window, now]."""
    stmt = select(func.count()).where(
        AutoReplyLog.address == address.lower(),
        AutoReplyLog.at > now - window,  # type: ignore[operator]
        AutoReplyLog.at <= now,  # type: ignore[operator]
    )
    return int(s.execute(stmt).scalar() or 0)


def sent_for_ticket(s: Session, ticket_id: int, now: datetime, window: timedelta = WINDOW) -> int:
    """How many automatic mails went out on ticket_id in (now - window, now]."""
    stmt = select(func.count()).where(
        AutoReplyLog.ticket_id == ticket_id,
        AutoReplyLog.at > now - window,  # type: ignore[operator]
        AutoReplyLog.at <= now,  # type: ignore[operator]
    )
    return int(s.execute(stmt).scalar() or 0)


def allow(
    s: Session, address: str, now: datetime, limit: int, *, ticket_id: int | None = None
) -> bool:
    """Take one slot for an automatic mail to address; False when the hour's quota is used."""
    address = address.lower()
    if s.get_bind().dialect.name == "postgresql":
        # Two ingest workers answering the same storm must not both see
        # "limit - 1": serialise per address until this transaction ends.
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:a))"), {"a": address})
    if sent_recently(s, address, now) >= limit:
        return False
    s.execute(_LOG, {"address": address, "at": now, "ticket_id": ticket_id})
    return True


def prune(s: Session, before: datetime) -> int:
    """Delete log rows older than before (they no longer count); returns how many."""
    result = s.execute(delete(AutoReplyLog).where(AutoReplyLog.at < before))  # type: ignore[arg-type]
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
