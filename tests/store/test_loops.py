"""Two helpdesks that take each other for customers stop within 3 messages (issue 5)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailtix.config import Config
from mailtix.services import ingest
from mailtix.store import outbox, spool, tickets
from mailtix.store.db import Database
from mailtix.store.spool import Envelope
from mailtix.store.tables import OutboxItem

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@dataclass
class Instance:
    """One mailtix: its config and database, fed by hand and drained by hand."""

    cfg: Config
    db: Database
    address: str

    def receive(self, raw: bytes, mail_from: str, now: datetime) -> None:
        env = Envelope(source="smtp", mail_from=mail_from, rcpt_to=(self.address,))
        with self.db.write() as s:
            (stored,) = spool.put_many(s, [(raw, env)], now)
        if stored.item_id is not None:
            ingest.process_item(self.db, self.cfg, stored.item_id, now)

    def sent_to(self, address: str, now: datetime) -> list[tuple[str, bytes]]:
        """Pending outbox mail for address (envelope sender, bytes), marked sent."""
        out = []
        with self.db.write() as s:
            for claim in outbox.claim_due(s, now + timedelta(hours=1), 100):
                if address in claim.recipients:
                    out.append((claim.envelope_from, claim.raw))
                outbox.mark_sent(s, claim.id, now)
        return out


def _strip_machine_headers(raw: bytes) -> bytes:
    """What a naive helpdesk sends: no RFC 3834 header, no loop header, no threading."""
    head, _, body = raw.partition(b"\r\n\r\n")
    keep = [
        line
        for line in re.split(rb"\r\n(?![ \t])", head)
        if not re.match(
            rb"(?i)(auto-submitted|x-mailtix-loop|in-reply-to|references|"
            rb"x-auto-response-suppress|precedence):",
            line,
        )
    ]
    # ...and that writes its own subject line, so our tag does not thread it either.
    keep = [re.sub(rb"\[Ticket #\d+\] ?", b"", line) for line in keep]
    return b"\r\n".join(keep) + b"\r\n\r\n" + body


@pytest.fixture
def pair(
    db: Database, db_url: str, make_config: Callable[..., Config], tmp_path: Path
) -> tuple[Instance, Instance]:
    a_cfg = make_config(
        db_url=db_url,
        queue=[{"name": "support", "addresses": ["support@a.example"]}],
        agent=[{"email": "agent@a.example", "queues": ["support"]}],
        outbound={"from_address": "support@a.example"},
    )
    b_path = tmp_path / "b.db"
    b_db = Database(f"sqlite:///{b_path}")
    b_db.upgrade()
    b_cfg = make_config(
        db_url=f"sqlite:///{b_path}",
        queue=[{"name": "help", "addresses": ["help@b.example"]}],
        agent=[{"email": "agent@b.example", "queues": ["help"]}],
        outbound={"from_address": "help@b.example"},
        tickets={"attachment_dir": str(tmp_path / "b-att")},
    )
    yield Instance(a_cfg, db, "support@a.example"), Instance(b_cfg, b_db, "help@b.example")
    b_db.dispose()


def _exchange(a: Instance, b: Instance, mangle: Callable[[bytes], bytes], rounds: int = 20) -> int:
    """B writes to A once; then each side's mail to the other is delivered. Messages counted."""
    first = (
        b"From: help@b.example\r\nTo: support@a.example\r\nSubject: Question\r\n"
        b"Message-ID: <start@b.example>\r\n\r\nHello?\r\n"
    )
    now = T0
    a.receive(first, "help@b.example", now)
    crossed = 1
    for _ in range(rounds):
        now += timedelta(seconds=5)
        moved = 0
        for src, dst in ((a, b), (b, a)):
            for envelope_from, raw in src.sent_to(dst.address, now):
                dst.receive(mangle(raw), envelope_from, now)
                moved += 1
        crossed += moved
        if moved == 0:
            return crossed
    return crossed


def test_two_mailtix_instances_stop_at_once(pair: tuple[Instance, Instance]) -> None:
    """Our acknowledgement is auto-replied mail: the other mailtix never answers it."""
    a, b = pair
    assert _exchange(a, b, lambda raw: raw) <= 3


def test_naive_helpdesks_are_stopped_by_the_loop_breaker(pair: tuple[Instance, Instance]) -> None:
    """Without any machine header or threading, the breaker cuts the ping-pong and says why."""
    a, b = pair
    assert _exchange(a, b, _strip_machine_headers) <= 3
    with a.db.read() as s:
        reasons = [
            json.loads(e.detail).get("reason", "")
            for t in tickets.find(s)
            for e in tickets.events(s, t.id or 0)
            if e.kind == "auto-reply-suppressed"
        ]
    with b.db.read() as s:
        reasons += [
            json.loads(e.detail).get("reason", "")
            for t in tickets.find(s)
            for e in tickets.events(s, t.id or 0)
            if e.kind == "auto-reply-suppressed"
        ]
    assert any(r.startswith("loop breaker") for r in reasons), reasons


def test_a_customer_writing_twice_an_hour_apart_gets_two_acknowledgements(
    pair: tuple[Instance, Instance],
) -> None:
    """The breaker is about machine speed: a person's second ticket later on is answered."""
    a, _ = pair
    for n, at in enumerate((T0, T0 + timedelta(hours=1))):
        a.receive(
            f"From: carol@customer.org\r\nTo: support@a.example\r\nSubject: issue {n}\r\n"
            f"Message-ID: <c{n}@customer.org>\r\n\r\nhelp\r\n".encode(),
            "carol@customer.org",
            at,
        )
    with a.db.read() as s:
        acks = s.scalar(select(func.count()).where(OutboxItem.kind == "ack"))
    assert acks == 2
