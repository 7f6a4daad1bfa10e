"""The daemon's clock: APScheduler triggers the jobs of services.periodic.

Jobs are idempotent and take `now`, so a missed or doubled run is harmless;
the scheduler holds no state of its own (no job store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler

from mailtix.services import periodic
from mailtix.store.db import Database

log = logging.getLogger("mailtix.scheduler")


class Scheduler:
    """Runs every periodic job at its interval, on APScheduler's own thread."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._scheduler = BackgroundScheduler(timezone="UTC")

    def _run(self, name: str) -> None:
        try:
            done = periodic.JOBS[name](self.db, self.clock())
            log.info("%s: %s", name, done)
        except Exception:
            # A job failing now is retried at its next run; it must not stop the others.
            log.exception("job %s failed", name)

    def start(self) -> None:
        """Start triggering; the first housekeeping runs at once."""
        self._scheduler.add_job(
            self._run,
            "interval",
            hours=1,
            args=["housekeeping"],
            id="housekeeping",
            max_instances=1,
            coalesce=True,
            next_run_time=self.clock(),
            misfire_grace_time=600,
        )
        self._scheduler.start()

    def stop(self) -> None:
        """Stop triggering; waits for a running job to finish."""
        self._scheduler.shutdown(wait=True)
