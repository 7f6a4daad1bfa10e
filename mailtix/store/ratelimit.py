"""Rate limit of automatic mail per recipient address (SPEC §6, RFC 3834 §2).

A sliding window over `AutoReplyLog`: an automatic message to an address is
allowed while fewer than `limit` were sent to it in the past hour. Only mail
actually enqueued is logged, so a storm stays cut for as long as it lasts
and recovers an hour after our last answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, false, func, insert, or_, select, text
from sqlmodel import Session

from mailtix.store.tables import AutoReplyLog

WINDOW = timedelta(hours=1)
_LOG = insert(AutoReplyLog.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Recent:
    """Automatic mail sent lately: to one address (in the loop window, in the hour), on a ticket."""

    to_address_in_window: int
    to_address_in_hour: int
    on_ticket_in_hour: int


def recent(
    s: Session, address: str, ticket_id: int | None, now: datetime, window: timedelta
) -> Recent:
    """The three counts the limits need, in one query; serialised per address on PostgreSQL."""
    address = address.lower()
    if s.get_bind().dialect.name == "postgresql":
        # Two runners answering the same storm must not both see "limit - 1":
        # serialise per address until this transaction ends.
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:a))"), {"a": address})
    since = now - max(window, WINDOW)
    to_addr = and_(AutoReplyLog.address == address, AutoReplyLog.kind == "reply")
    on_ticket = AutoReplyLog.ticket_id == ticket_id if ticket_id is not None else false()
    row = s.execute(
        select(
            func.coalesce(
                func.sum(case((and_(to_addr, AutoReplyLog.at > now - window), 1), else_=0)), 0
            ),
            func.coalesce(
                func.sum(case((and_(to_addr, AutoReplyLog.at > now - WINDOW), 1), else_=0)), 0
            ),
            func.coalesce(
                func.sum(case((and_(on_ticket, AutoReplyLog.at > now - WINDOW), 1), else_=0)), 0
            ),
        ).where(
            or_(AutoReplyLog.address == address, on_ticket),
            AutoReplyLog.at > since,  # type: ignore[operator]
            AutoReplyLog.at <= now,  # type: ignore[operator]
        )
    ).one()
    return Recent(int(row[0]), int(row[1]), int(row[2]))


def record(
    s: Session, address: str, now: datetime, ticket_id: int | None, kind: str = "reply"
) -> None:
    """Log one automatic mail to address (it counts against the limits from now on)."""
    s.execute(_LOG, {"address": address.lower(), "at": now, "ticket_id": ticket_id, "kind": kind})


def prune(s: Session, before: datetime) -> int:
    """Delete log rows older than before (they no longer count); returns how many."""
    result = s.execute(delete(AutoReplyLog).where(AutoReplyLog.at < before))  # type: ignore[arg-type]
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
