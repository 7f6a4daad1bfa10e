"""Scheduled jobs: each takes `now`, is idempotent, and is one transaction.

The daemon's scheduler only triggers them (mailtix/scheduler.py); `mailtix
run-jobs --now T` runs them once as of T.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from mailtix.store import ratelimit
from mailtix.store.db import Database

# The rate-limit windows look back one hour at most; a day of history is plenty.
AUTO_REPLY_LOG_KEPT = timedelta(days=1)


def housekeeping(db: Database, now: datetime) -> dict[str, int]:
    """Delete bookkeeping rows that no longer count; returns what was removed."""
    with db.write() as s:
        pruned = ratelimit.prune(s, now - AUTO_REPLY_LOG_KEPT)
    return {"auto_reply_log": pruned}


JOBS = {"housekeeping": housekeeping}
