"""The database tables (SQLModel). Every schema change goes with a migration.

After editing this file run `scripts/regen-migration.sh` (it rewrites the
initial revision from these models while the project has no released
schema); `tests/store/test_migrations.py` fails when the two disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, LargeBinary, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as UTC; SQLite keeps no offset, so it is put back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(**kw: Any) -> Any:
    return Column(UTCDateTime(), **kw)


class SpoolItem(SQLModel, table=True):
    """One received message, raw bytes and envelope, as durably stored at the edge.

    state: "new" (waiting for the runner), "done", "quarantined".
    """

    __tablename__ = "spool_item"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_spool_dedupe"),
        Index("ix_spool_state_id", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_column=_ts(nullable=False))
    source: str = Field(max_length=32)  # smtp, lmtp, imap:<mailbox>, inject, import
    mail_from: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    rcpt_to: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    queue: str | None = Field(default=None, max_length=200)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int = 0
    message_id: str | None = Field(default=None, sa_column=Column(Text))
    dedupe_key: str = Field(max_length=64)
    state: str = Field(default="new", max_length=16)
    attempts: int = 0
    # After a failed attempt, not before this time (None: at once).
    next_attempt_at: datetime | None = Field(default=None, sa_column=_ts())
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    processed_at: datetime | None = Field(default=None, sa_column=_ts())
    ticket_id: int | None = Field(default=None, index=True)


class Ticket(SQLModel, table=True):
    __tablename__ = "ticket"
    __table_args__ = (Index("ix_ticket_status_queue", "status", "queue"),)

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: str = Field(default="new", max_length=16)
    priority: str = Field(default="normal", max_length=16)
    type: str = Field(default="incident", max_length=16)
    category: str | None = Field(default=None, max_length=200)
    queue: str = Field(max_length=200)
    requester: str = Field(max_length=320, index=True)
    requester_name: str = Field(default="", max_length=320)
    assignee: str | None = Field(default=None, max_length=320)
    tags: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    language: str | None = Field(default=None, max_length=8)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = Field(sa_column=_ts(nullable=False))
    first_response_at: datetime | None = Field(default=None, sa_column=_ts())
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())
    closed_at: datetime | None = Field(default=None, sa_column=_ts())
    # The closed ticket this one continues (a customer replied to it after closing).
    follows_ticket_id: int | None = Field(default=None)
    merged_into_id: int | None = Field(default=None)


class Participant(SQLModel, table=True):
    """Someone on a ticket: its requester, or a Cc'd person."""

    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("ticket_id", "email", name="uq_participant"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    email: str = Field(max_length=320)
    name: str = Field(default="", max_length=320)
    role: str = Field(default="cc", max_length=16)  # requester | cc


class TicketMessage(SQLModel, table=True):
    """A message of a ticket's history, received or sent."""

    __tablename__ = "ticket_message"
    # Every incoming message is looked up by its Message-ID (duplicate check).
    __table_args__ = (Index("ix_ticket_message_message_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    spool_item_id: int | None = Field(default=None)
    message_id: str = Field(sa_column=Column(Text, nullable=False))
    direction: str = Field(max_length=4)  # in | out
    internal: bool = False
    from_addr: str = Field(default="", max_length=320)
    from_name: str = Field(default="", max_length=320)
    to_addrs: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    cc_addrs: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    html: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=_ts(nullable=False))


class Attachment(SQLModel, table=True):
    """A file attached to a ticket message, stored content-addressed on disk."""

    __tablename__ = "attachment"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="ticket_message.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    size: int = 0
    sha256: str = Field(max_length=64)


class ThreadRef(SQLModel, table=True):
    """Every Message-ID mailtix stored or sent, and the ticket it belongs to."""

    __tablename__ = "thread_ref"

    message_id: str = Field(sa_column=Column(Text, primary_key=True))
    ticket_id: int = Field(foreign_key="ticket.id", index=True)


class Event(SQLModel, table=True):
    """Something that happened to a ticket (status change, note, suppression…)."""

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = Field(sa_column=_ts(nullable=False))
    kind: str = Field(max_length=64)
    actor: str = Field(default="", max_length=320)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class OutboxItem(SQLModel, table=True):
    """A rendered outgoing message waiting for (or done with) delivery.

    state: "pending", "sent", "failed".
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe"),
        Index("ix_outbox_due", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=64)
    dedupe_key: str = Field(max_length=255)
    message_id: str = Field(sa_column=Column(Text, nullable=False))
    envelope_from: str = Field(default="", max_length=320)
    recipients: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=_ts(nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_ts())


class AutoReplyLog(SQLModel, table=True):
    """One automatic mail sent (or suppressed) to an address, for rate limits."""

    __tablename__ = "auto_reply_log"
    __table_args__ = (Index("ix_auto_reply_addr_at", "address", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=320)
    at: datetime = Field(sa_column=_ts(nullable=False))
    ticket_id: int | None = Field(default=None, index=True)
    # "reply": an answer to mail from address (an acknowledgement); "notice": a
    # status notice. Only replies count for the loop breaker and the address limit.
    kind: str = Field(default="reply", max_length=16)


class MailboxState(SQLModel, table=True):
    """Where an IMAP poller stands in its folder."""

    __tablename__ = "mailbox_state"

    name: str = Field(primary_key=True, max_length=200)
    uidvalidity: int | None = Field(default=None)
    last_uid: int = 0
    updated_at: datetime | None = Field(default=None, sa_column=_ts())


class BouncedAddress(SQLModel, table=True):
    """An address our mail bounced from; suppressed after too many hard bounces."""

    __tablename__ = "bounced_address"

    address: str = Field(primary_key=True, max_length=320)
    hard_bounces: int = 0
    soft_bounces: int = 0
    last_status: str | None = Field(default=None, max_length=32)
    last_at: datetime = Field(sa_column=_ts(nullable=False))
    suppressed_at: datetime | None = Field(default=None, sa_column=_ts())
