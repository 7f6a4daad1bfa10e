"""Ticket statuses and what each kind of mail does to them (SPEC §3)."""

from __future__ import annotations

from typing import Final

STATUSES: Final = ("new", "open", "pending", "resolved", "closed")
PRIORITIES: Final = ("low", "normal", "high", "urgent")
TYPES: Final = ("incident", "request", "alert")

# A customer's reply to a ticket waiting on them, or to one we thought solved,
# puts it back in the agents' hands.
_REOPENED_BY_CUSTOMER: Final = frozenset({"pending", "resolved"})


def after_customer_reply(status: str) -> str:
    """The status a ticket takes when its requester or a participant writes into it.

    A closed ticket never gets here: linking opens a new ticket instead.
    """
    return "open" if status in _REOPENED_BY_CUSTOMER else status


def after_agent_answer(status: str) -> str:
    """The status a ticket takes when an agent answers the customer by mail."""
    return "open" if status == "new" else status
