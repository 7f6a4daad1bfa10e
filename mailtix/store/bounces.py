"""Addresses our mail bounced from, and which of them we stop writing to."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailtix.store.tables import BouncedAddress


def record(
    s: Session, address: str, *, hard: bool, status: str | None, now: datetime, threshold: int
) -> bool:
    """Count one bounce for address; True when this one makes it suppressed."""
    address = address.lower()
    row = s.get(BouncedAddress, address) or BouncedAddress(address=address, last_at=now)
    if hard:
        row.hard_bounces += 1
    else:
        row.soft_bounces += 1
    row.last_status = status
    row.last_at = now
    newly = hard and row.suppressed_at is None and row.hard_bounces >= threshold
    if newly:
        row.suppressed_at = now
    s.add(row)
    s.flush()
    return newly


def suppressed(s: Session, address: str) -> BouncedAddress | None:
    """The bounce record of address if mail to it is suppressed, else None."""
    row = s.get(BouncedAddress, address.lower())
    return row if row is not None and row.suppressed_at is not None else None


def clear(s: Session, address: str) -> bool:
    """Write to address again (it answered us, or an admin fixed it). True if it was suppressed."""
    row = s.get(BouncedAddress, address.lower())
    if row is None or row.suppressed_at is None:
        return False
    row.suppressed_at = None
    row.hard_bounces = 0
    s.add(row)
    return True
