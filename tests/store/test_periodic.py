"""Scheduled jobs are idempotent and keep the bookkeeping tables small."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailtix.services import periodic
from mailtix.store import ratelimit
from mailtix.store.db import Database

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_housekeeping_prunes_old_rate_limit_rows_only_once(db: Database) -> None:
    """Rows older than a day go; recent ones (still counted by the limits) stay."""
    with db.write() as s:
        ratelimit.record(s, "old@x.org", NOW - timedelta(days=2), None)
        ratelimit.record(s, "new@x.org", NOW - timedelta(minutes=5), None)
    assert periodic.housekeeping(db, NOW) == {"auto_reply_log": 1}
    assert periodic.housekeeping(db, NOW) == {"auto_reply_log": 0}
    with db.read() as s:
        seen = ratelimit.recent(s, "new@x.org", None, NOW, timedelta(0))
        assert seen.to_address_in_hour == 1
