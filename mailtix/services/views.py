"""The stable JSON shapes of `mailtix tickets --json`, `show --json` and `quarantine --json`.

Documented in the README; changing a key is a breaking change for scripts.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mailtix.errors import UserError
from mailtix.store import spool, tickets
from mailtix.store.db import Database
from mailtix.store.tables import SpoolItem, Ticket


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def ticket_summary(t: Ticket) -> dict[str, Any]:
    """One ticket as in `tickets --json`."""
    return {
        "id": t.id,
        "subject": t.subject,
        "status": t.status,
        "priority": t.priority,
        "type": t.type,
        "category": t.category,
        "queue": t.queue,
        "requester": t.requester,
        "assignee": t.assignee,
        "tags": json.loads(t.tags),
        "created_at": _iso(t.created_at),
        "updated_at": _iso(t.updated_at),
        "first_response_at": _iso(t.first_response_at),
        "follows": t.follows_ticket_id,
        "merged_into": t.merged_into_id,
    }


def list_tickets(db: Database, *, status: str | None, queue: str | None) -> list[dict[str, Any]]:
    """Tickets, newest first, as JSON-ready dicts."""
    with db.read() as s:
        return [ticket_summary(t) for t in tickets.find(s, status=status, queue=queue)]


def ticket_detail(db: Database, ticket_id: int) -> dict[str, Any]:
    """One ticket with its messages and events, as in `show --json`."""
    with db.read() as s:
        t = tickets.get(s, ticket_id)
        if t is None:
            raise UserError(f"no ticket #{ticket_id}")
        out = ticket_summary(t)
        out["participants"] = [
            {"email": p.email, "name": p.name, "role": p.role}
            for p in tickets.participants(s, ticket_id)
        ]
        msgs = tickets.messages(s, ticket_id)
        atts = tickets.attachments_of(s, [m.id for m in msgs if m.id is not None])
        out["messages"] = [
            {
                "message_id": m.message_id,
                "from": m.from_addr,
                "to": json.loads(m.to_addrs),
                "cc": json.loads(m.cc_addrs),
                "direction": m.direction,
                "internal": m.internal,
                "subject": m.subject,
                "body": m.body,
                "attachments": [a.filename for a in atts.get(m.id or 0, [])],
                "at": _iso(m.created_at),
            }
            for m in msgs
        ]
        out["events"] = [
            {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "detail": json.loads(e.detail)}
            for e in tickets.events(s, ticket_id)
        ]
        return out


def quarantine_summary(item: SpoolItem) -> dict[str, Any]:
    """One quarantined item as in `quarantine list --json`."""
    return {
        "id": item.id,
        "received_at": _iso(item.received_at),
        "source": item.source,
        "mail_from": item.mail_from,
        "rcpt_to": json.loads(item.rcpt_to),
        "message_id": item.message_id,
        "size": item.size,
        "attempts": item.attempts,
        "reason": item.last_error,
    }


def list_quarantine(db: Database) -> list[dict[str, Any]]:
    """Every quarantined item, oldest first."""
    with db.read() as s:
        return [quarantine_summary(i) for i in spool.quarantined(s)]


def quarantine_item(db: Database, item_id: int) -> tuple[dict[str, Any], bytes]:
    """One quarantined item and its raw bytes."""
    with db.read() as s:
        item = spool.get(s, item_id)
        if item is None or item.state != "quarantined":
            raise UserError(f"no quarantined item {item_id}")
        return quarantine_summary(item), item.raw


def replay(db: Database, item_id: int) -> None:
    """Put a quarantined item back in line for the runner."""
    with db.write() as s:
        if not spool.replay(s, item_id):
            raise UserError(f"no quarantined item {item_id}")
