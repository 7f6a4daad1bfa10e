"""The spool runner: takes stored items in order and ingests each exactly once in effect.

Parsing is CPU work that needs no lock, so with `spool.workers > 1` it runs
ahead in worker processes while this thread applies results strictly in
spool order (a reply must never be applied before the mail it answers).
This loop is one of mailtix's three catch-alls: an item that raises is
counted, retried, and quarantined after `spool.max_attempts`; the loop goes on.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import datetime, timedelta

from mailtix.config import Config
from mailtix.errors import StoreUnavailable
from mailtix.services import ingest
from mailtix.services.ingest import ItemOutcome, Prepared
from mailtix.store import spool
from mailtix.store.db import Database, Session, is_temporary

log = logging.getLogger("mailtix.runner")
# errno values that mean "the disk cannot take it now", not "this message is bad".
_DISK_TROUBLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
Clock = Callable[[], datetime]


class Runner:
    """Drains the spool; `run` loops until stopped, `run_once` drains what waits now."""

    def __init__(
        self,
        db: Database,
        cfg: Config,
        clock: Clock,
        *,
        batch: int = 200,
        batch_seconds: float = 0.05,
        on_processed: Callable[[], None] | None = None,
        before_batch: Callable[[], object] | None = None,
    ) -> None:
        self.db = db
        self.batch_seconds = batch_seconds
        # Called before each write transaction (the daemon lets the listener's
        # group commit go first: SQLite has one writer).
        self.before_batch = before_batch
        # Called after a round that processed items (e.g. wake the sender for new outbox rows).
        self.on_processed = on_processed
        self.cfg = cfg
        self.clock = clock
        self.batch = batch
        self.wake = threading.Event()
        self._pool: Executor | None = None
        if cfg.spool.workers > 1:
            self._pool = ProcessPoolExecutor(
                max_workers=cfg.spool.workers, mp_context=multiprocessing.get_context("spawn")
            )

    def close(self) -> None:
        """Stop the parse workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run_once(
        self, limit: int | None = None, stop: threading.Event | None = None
    ) -> list[ItemOutcome]:
        """Process every item due now (up to limit); return what became of each.

        Raises StoreUnavailable when the database cannot be used (nothing of
        the interrupted batch is kept; its items wait for the next round).
        Returns early, between two transactions, once stop is set.
        """
        outcomes: list[ItemOutcome] = []
        after = 0
        while (limit is None or len(outcomes) < limit) and not (stop and stop.is_set()):
            with self.db.read() as s:
                want = self.batch if limit is None else min(self.batch, limit - len(outcomes))
                ids = spool.pending_ids(s, want, after=after, now=self.clock())
            if not ids:
                break
            waiting = deque(self._prepared(ids))
            while waiting and not (stop and stop.is_set()):
                outcomes += self._apply_batch(waiting)
            after = ids[-1]
        return outcomes

    def run(self, stop: threading.Event) -> None:
        """Process items until stop is set; wakes on `self.wake` or every poll interval."""
        backoff = 1.0
        while not stop.is_set():
            self.wake.clear()
            try:
                done = self.run_once(stop=stop)
                backoff = 1.0
                if done and self.on_processed is not None:
                    self.on_processed()
            except StoreUnavailable as err:
                log.warning("database unavailable, retrying in %.0f s: %s", backoff, err)
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            except Exception:
                # Not an item's fault (those are caught per item): a bug or a broken
                # parse pool. Logged; the loop goes on rather than dying silently.
                log.exception("runner round failed; retrying in %.0f s", backoff)
                self._restart_pool()
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            if not done:
                self.wake.wait(self.cfg.spool.poll_interval)

    def _restart_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ProcessPoolExecutor(
                max_workers=self.cfg.spool.workers, mp_context=multiprocessing.get_context("spawn")
            )

    # ----------------------------------------------------------------
    def _prepared(self, ids: list[int]) -> Iterator[Prepared]:
        t = self.cfg.tickets
        raws: list[tuple[int, bytes]] = []
        with self.db.read() as s:
            for item_id in ids:
                item = spool.get(s, item_id)
                if item is not None and item.state == "new":
                    raws.append((item_id, item.raw))
        if self._pool is None:
            for item_id, raw in raws:
                yield _safe_prepare(item_id, raw, t.max_attachment_bytes, t.max_attachments)
            return
        futures = [
            self._pool.submit(_safe_prepare, i, raw, t.max_attachment_bytes, t.max_attachments)
            for i, raw in raws
        ]
        for fut in futures:
            yield fut.result()

    def _apply_batch(self, waiting: deque[Prepared]) -> list[ItemOutcome]:
        """Apply items from the left of waiting in one transaction, each in a savepoint.

        One commit (one fsync) for many items, yet each item's effects stay
        atomic: a failing item is rolled back to its savepoint and counted,
        the others commit. The batch is cut after `batch_seconds` so the
        listener's group commit never waits long for SQLite's single write lock.
        """
        if self.before_batch is not None:
            self.before_batch()
        done: list[ItemOutcome] = []
        deadline = time.monotonic() + self.batch_seconds
        with self.db.write() as s:
            now = self.clock()
            while waiting and (not done or time.monotonic() < deadline):
                done.append(self._apply_item(s, waiting[0], now))
                waiting.popleft()
        return done

    def _apply_item(self, s: Session, prep: Prepared, now: datetime) -> ItemOutcome:
        savepoint = s.begin_nested()
        try:
            outcome = ingest.apply_in(s, self.cfg, prep, now)
            savepoint.commit()
            return outcome
        except Exception as err:
            savepoint.rollback()
            if is_temporary(err):
                raise StoreUnavailable(f"database unavailable: {err}") from err
            if isinstance(err, OSError) and err.errno in _DISK_TROUBLE:
                # A full or failing disk is nobody's message's fault: no attempt counted.
                raise StoreUnavailable(f"cannot write attachments: {err}") from err
            log.exception("item %s failed", prep.item_id)
            reason = f"{type(err).__name__}: {err}"
            cfg = self.cfg.spool
            retry = timedelta(seconds=cfg.retry_seconds)
            state = spool.record_failure(s, prep.item_id, reason, cfg.max_attempts, now, retry)
            return ItemOutcome(prep.item_id, "failed" if state == "new" else state, detail=reason)


def _safe_prepare(item_id: int, raw: bytes, max_bytes: int, max_count: int) -> Prepared:
    """prepare(), with any parser crash turned into a reason (the item gets quarantined)."""
    try:
        return ingest.prepare(item_id, raw, max_bytes, max_count)
    except Exception as err:
        return Prepared(item_id, None, f"parser failed: {type(err).__name__}: {err}")
