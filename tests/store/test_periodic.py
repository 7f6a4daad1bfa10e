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
        assert ratelimit.allow(s, "old@x.org", NOW - timedelta(days=2), 10)
        assert ratelimit.allow(s, "new@x.org", NOW - timedelta(minutes=5), 10)
    assert periodic.housekeeping(db, NOW) == {"auto_reply_log": 1}
    assert periodic.housekeeping(db, NOW) == {"auto_reply_log": 0}
    with db.read() as s:
        assert ratelimit.sent_recently(s, "new@x.org", NOW) == 1
