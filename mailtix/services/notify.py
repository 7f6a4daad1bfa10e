"""Notifications caused by ticket changes, rendered once into outbox rows.

Called by services.ingest inside the item's transaction, so a ticket change
and the mail it causes commit together. (Owned by the outbound work: the
bodies below are filled there; the signatures are the contract with ingest.)
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailtix.config import Config
from mailtix.core.message import ParsedMessage
from mailtix.store.tables import Ticket, TicketMessage


def on_new_ticket(
    s: Session, cfg: Config, ticket: Ticket, msg: TicketMessage, parsed: ParsedMessage,
    *, may_auto_reply: bool, now: datetime,
) -> None:
    """A ticket was opened by msg: acknowledge the requester, tell the queue's agents."""


def on_customer_reply(
    s: Session, cfg: Config, ticket: Ticket, msg: TicketMessage, parsed: ParsedMessage,
    *, may_auto_reply: bool, now: datetime,
) -> None:
    """A requester or participant wrote into ticket: tell the assignee or the queue's agents."""


def on_agent_answer(
    s: Session, cfg: Config, ticket: Ticket, msg: TicketMessage, parsed: ParsedMessage,
    *, agent: str, now: datetime,
) -> None:
    """An authenticated agent answered by mail: relay the answer to the requester and Cc's."""


def on_status_change(
    s: Session, cfg: Config, ticket: Ticket, old: str, new: str, *, actor: str, now: datetime,
) -> None:
    """The status of ticket changed: tell the requester when it is resolved or closed."""
