"""The outbox keeps each notification once, leases rows to senders, and rate-limits auto mail."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from mailtix.store import outbox, ratelimit, tickets
from mailtix.store.db import Database
from mailtix.store.tables import OutboxItem, ThreadRef, TicketMessage

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _ticket(s: Session) -> int:
    t = tickets.create(
        s,
        subject="Printer",
        queue="support",
        requester="c@customer.org",
        requester_name="C",
        now=NOW,
    )
    assert t.id is not None
    return t.id


def _enqueue(
    s: Session,
    key: str,
    *,
    ticket_id: int | None = None,
    at: datetime = NOW,
    history: outbox.History | None = None,
) -> OutboxItem | None:
    return outbox.enqueue(
        s,
        ticket_id=ticket_id,
        kind="ack",
        dedupe_key=key,
        message_id=f"<{key}@example.com>",
        envelope_from="support@example.com",
        recipients=["c@customer.org"],
        raw=b"Subject: x\r\n\r\nbody\r\n",
        now=at,
        history=history,
    )


def test_a_dedupe_key_is_enqueued_once(db: Database) -> None:
    """The second enqueue with the same key returns None and adds nothing."""
    with db.write() as s:
        first = _enqueue(s, "k1")
        assert first is not None and first.state == "pending" and first.next_attempt_at == NOW
    with db.write() as s:
        assert _enqueue(s, "k1") is None
        assert outbox.exists(s, "k1") and not outbox.exists(s, "k2")
        assert outbox.counts(s) == {"pending": 1}


def test_enqueue_records_thread_ref_and_history(db: Database) -> None:
    """The Message-ID threads back to the ticket; the history shows an outgoing message."""
    history = outbox.History(
        from_addr="support@example.com",
        from_name="Support",
        to=("c@customer.org",),
        subject="Re: [Ticket #1] Printer",
        body="We got it.",
    )
    with db.write() as s:
        tid = _ticket(s)
        _enqueue(s, "k1", ticket_id=tid, history=history)
        _enqueue(s, "k2", ticket_id=tid)  # another copy: thread ref only
    with db.read() as s:
        assert s.get(ThreadRef, "<k1@example.com>").ticket_id == tid  # type: ignore[union-attr]
        assert s.get(ThreadRef, "<k2@example.com>") is not None
        assert tickets.ticket_for_message_ids(s, ["<k1@example.com>"]) == tid
        (msg,) = [m for m in tickets.messages(s, tid) if m.direction == "out"]
        assert isinstance(msg, TicketMessage)
        assert (msg.message_id, msg.body, msg.internal) == ("<k1@example.com>", "We got it.", False)


def test_claim_takes_due_rows_oldest_first_and_leases_them(db: Database) -> None:
    """A claimed row is not claimed again until its lease ends; attempts count claims."""
    with db.write() as s:
        _enqueue(s, "late", at=NOW + timedelta(minutes=1))
        _enqueue(s, "b", at=NOW)
        _enqueue(s, "a", at=NOW - timedelta(minutes=1))
    with db.write() as s:
        claims = outbox.claim_due(s, NOW, 10, LEASE)
    assert [c.message_id for c in claims] == ["<a@example.com>", "<b@example.com>"]
    assert all(c.attempts == 1 and c.recipients == ("c@customer.org",) for c in claims)
    with db.write() as s:
        assert [c.message_id for c in outbox.claim_due(s, NOW + LEASE / 2, 10, LEASE)] == [
            "<late@example.com>"
        ]
        assert outbox.next_due(s) == NOW + LEASE
    with db.write() as s:
        again = outbox.claim_due(s, NOW + LEASE, 10, LEASE)
    assert sorted(c.message_id for c in again) == ["<a@example.com>", "<b@example.com>"]
    assert [c.attempts for c in again] == [2, 2]


def test_marks_move_pending_rows_only(db: Database) -> None:
    """sent, retry and failed apply to pending rows; a finished row stays finished."""
    with db.write() as s:
        ids = [_enqueue(s, k).id for k in ("s", "r", "f")]  # type: ignore[union-attr]
    s_id, r_id, f_id = (i for i in ids if i is not None)
    later = NOW + timedelta(minutes=3)
    with db.write() as s:
        assert outbox.mark_sent(s, s_id, NOW)
        assert outbox.mark_retry(s, r_id, later, "451 busy")
        assert outbox.mark_failed(s, f_id, "550 no such user", NOW)
        assert not outbox.mark_retry(s, s_id, later, "late")
        assert not outbox.mark_sent(s, f_id, NOW)
    with db.read() as s:
        sent, retry, failed = (outbox.get(s, i) for i in (s_id, r_id, f_id))
        assert sent is not None and sent.state == "sent" and sent.sent_at == NOW
        assert retry is not None and (retry.state, retry.next_attempt_at) == ("pending", later)
        assert retry.last_error == "451 busy"
        assert failed is not None and (failed.state, failed.last_error) == (
            "failed",
            "550 no such user",
        )


def test_concurrent_claims_take_disjoint_rows_on_postgres(db: Database) -> None:
    """FOR UPDATE SKIP LOCKED: a second sender skips what the first holds."""
    if not db.is_postgres:
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers instead")
    with db.write() as s:
        for i in range(6):
            _enqueue(s, f"m{i}")
    first_claimed = threading.Event()
    release = threading.Event()
    got: dict[str, list[str]] = {}

    def first() -> None:
        with db.write() as s:
            got["first"] = [c.message_id for c in outbox.claim_due(s, NOW, 3, LEASE)]
            first_claimed.set()
            release.wait(10)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert first_claimed.wait(10)
        with db.write() as s:
            got["second"] = [c.message_id for c in outbox.claim_due(s, NOW, 10, LEASE)]
    finally:
        release.set()
        t.join(10)
    assert len(got["first"]) == 3 and len(got["second"]) == 3
    assert not set(got["first"]) & set(got["second"])


def test_verp_token_round_trips() -> None:
    """A bounce to the VERP envelope sender names its outbox row."""
    template = "bounces+{token}@example.com"
    address = outbox.envelope_sender(template, 42)
    assert address == "bounces+o42@example.com"
    assert outbox.item_id_from_bounce_address(f"<{address.upper()}>", template) == 42
    assert outbox.item_id_from_bounce_address("bounces+x42@example.com", template) is None
    assert outbox.item_id_from_bounce_address("bounces+o42@example.com", "bounces@x") is None


def test_rate_limit_counts_slide_and_keep_addresses_and_kinds_apart(db: Database) -> None:
    """Counts of the last hour and of the loop window; other addresses and notices apart."""
    addr = "Storm@Customer.org"
    with db.write() as s:
        for i in range(3):
            ratelimit.record(s, addr, NOW + timedelta(minutes=i), 7)
        ratelimit.record(s, "other@customer.org", NOW, 8)
        ratelimit.record(s, addr, NOW, 7, kind="notice")
        seen = ratelimit.recent(
            s, "storm@customer.org", 7, NOW + timedelta(minutes=4), timedelta(minutes=3)
        )
        assert seen == ratelimit.Recent(
            to_address_in_window=1, to_address_in_hour=3, on_ticket_in_hour=4
        )
    with db.write() as s:
        # One hour after the first mail, it no longer counts.
        later = ratelimit.recent(s, addr, None, NOW + timedelta(minutes=60), timedelta(0))
        assert (later.to_address_in_hour, later.on_ticket_in_hour) == (2, 0)
        assert ratelimit.prune(s, NOW + timedelta(minutes=2)) == 4
