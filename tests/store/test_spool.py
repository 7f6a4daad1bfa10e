"""The spool stores each message once and hands it to the runner in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailtix.store import spool
from mailtix.store.db import Database
from mailtix.store.spool import Envelope

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MSG = (
    b"From: a@x.org\r\nTo: support@example.com\r\nMessage-ID: <1@x.org>\r\n"
    b"Subject: hi\r\n\r\nbody\r\n"
)


def test_put_is_idempotent_across_trace_headers(db: Database) -> None:
    """The same message stored twice, with another Received line, is one item."""
    env = Envelope(source="smtp", mail_from="a@x.org", rcpt_to=("support@example.com",))
    with db.write() as s:
        first = spool.put_many(s, [(MSG, env)], NOW)
    with db.write() as s:
        again = spool.put_many(s, [(b"Received: from relay\r\n" + MSG, env), (MSG, env)], NOW)
    assert first[0].item_id is not None and not first[0].duplicate
    assert [r.duplicate for r in again] == [True, True]
    with db.read() as s:
        assert spool.pending_ids(s, 10) == [first[0].item_id]


def test_failures_quarantine_after_max_attempts_and_replay(db: Database) -> None:
    """Three failures set the item aside with its reason; replay puts it back."""
    with db.write() as s:
        (stored,) = spool.put_many(s, [(MSG, Envelope(source="inject"))], NOW)
    assert stored.item_id is not None
    states = []
    for attempt in range(3):
        with db.write() as s:
            states.append(spool.record_failure(s, stored.item_id, f"boom {attempt}", 3, NOW))
    assert states == ["new", "new", "quarantined"]
    with db.read() as s:
        (item,) = spool.quarantined(s)
        assert item.last_error == "boom 2" and item.raw == MSG
        assert spool.pending_ids(s, 10) == []
    with db.write() as s:
        assert spool.replay(s, stored.item_id)
    with db.read() as s:
        assert spool.pending_ids(s, 10) == [stored.item_id]


def test_retry_delay_is_capped_at_a_day_and_never_overflows(db: Database) -> None:
    """Many failures with a long base delay: next attempt at most a day away, no error."""
    with db.write() as s:
        (stored,) = spool.put_many(s, [(MSG, Envelope(source="inject"))], NOW)
    assert stored.item_id is not None
    for _ in range(40):
        with db.write() as s:
            spool.record_failure(s, stored.item_id, "boom", 100, NOW, timedelta(hours=12))
    with db.read() as s:
        item = spool.get(s, stored.item_id)
        assert item is not None and item.attempts == 40
        assert item.next_attempt_at == NOW + timedelta(days=1)
