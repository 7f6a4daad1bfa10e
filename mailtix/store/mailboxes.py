"""Where each IMAP poller stands in its folder: UIDVALIDITY and the last UID handled.

The row is written in the same transaction as the spool items of a batch, so
"stored" and "the poller knows it stored it" commit together (RFC 3501
§2.3.1.1: a UID means something only together with its UIDVALIDITY).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailtix.store.tables import MailboxState


def get_state(session: Session, name: str) -> MailboxState | None:
    """The saved position of mailbox name, if it was ever polled."""
    return session.get(MailboxState, name)


def set_state(
    session: Session, name: str, uidvalidity: int, last_uid: int, now: datetime
) -> MailboxState:
    """Record mailbox name's UIDVALIDITY and last handled UID (caller commits)."""
    state = session.get(MailboxState, name)
    if state is None:
        state = MailboxState(name=name)
    state.uidvalidity = uidvalidity
    state.last_uid = last_uid
    state.updated_at = now
    session.add(state)
    return state
