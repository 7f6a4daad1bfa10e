"""Group commit: the messages of many SMTP sessions stored in one transaction.

Each accepted message must be durably committed before its 250 is sent, and a
durable commit costs an fsync. One thread takes store requests from every
session; whatever arrived while it was committing goes into the next batch,
so under load one fsync covers many messages and latency stays at about one
commit. There is no timer: the thread blocks on its queue, and a batch is
simply "everything waiting now" (capped in count and bytes).

By default the transaction itself runs in a child process (`StoreProcess`):
fingerprinting and the SQLAlchemy insert cost 20-50 % of the CPU aiosmtpd
spends per message, and on the listener's GIL that cost 0.1-0.2 of the
acceptance ceiling (bench/README.md). The child only runs `spool.put_many`
and commits; the reply still waits for that commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mailtix.errors import TemporaryError
from mailtix.inbound.storeproc import StoreProcess
from mailtix.store import spool
from mailtix.store.db import Database
from mailtix.store.spool import Envelope, Stored

log = logging.getLogger(__name__)

MAX_BATCH = 500
# Messages may be 25 MB each; keep one transaction's payload bounded.
MAX_BATCH_BYTES = 64 * 1024 * 1024


class Store(Protocol):
    """Stores one batch in one committed transaction."""

    def put_many(self, messages: Sequence[tuple[bytes, Envelope]], now: datetime) -> list[Stored]:
        """Store messages and commit; return what became of each."""
        ...

    def close(self) -> None:
        """Release what the store holds."""
        ...


class InThreadStore:
    """The transaction on the committer thread itself (no child process)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def put_many(self, messages: Sequence[tuple[bytes, Envelope]], now: datetime) -> list[Stored]:
        """Store messages in one write transaction on db."""
        with self._db.write() as session:
            return spool.put_many(session, messages, now)

    def close(self) -> None:
        """Nothing to release: db belongs to the caller."""


@dataclass(frozen=True, slots=True)
class _Request:
    raw: bytes
    env: Envelope
    future: Future[Stored]


class GroupCommitter:
    """A thread that stores submitted messages in batches, one transaction per batch."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        *,
        on_commit: Callable[[], None] | None = None,
        child_process: bool = True,
        max_batch: int = MAX_BATCH,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._db = db
        self._clock = clock
        # Called after each committed batch (the daemon wakes the runner with it).
        self._on_commit = on_commit
        self._child_process = child_process
        self._max_batch = max_batch
        self._max_bytes = max_batch_bytes
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        # Guards _accepting so that nothing is queued behind the stop marker.
        self._lock = threading.Lock()
        # Notified when nothing is queued or being committed (see wait_idle).
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._accepting = False
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self.batches = 0  # committed transactions, for the benchmark and tests

    def start(self) -> None:
        """Start the committing thread (and the store process, once it is ready)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("GroupCommitter already started")
            self._store = StoreProcess(self._db) if self._child_process else InThreadStore(self._db)
            self._accepting = True
            self._thread = threading.Thread(
                target=self._run, name="mailtix-groupcommit", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Store everything already submitted, then end the thread."""
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            self._queue.put(None)
        assert self._thread is not None and self._store is not None
        self._thread.join()
        self._store.close()

    def submit(self, raw: bytes, env: Envelope) -> Future[Stored]:
        """Queue raw for storing; the future resolves once its transaction committed."""
        future: Future[Stored] = Future()
        with self._lock:
            if self._accepting:
                self._pending += 1
                self._queue.put(_Request(raw, env, future))
                return future
        future.set_exception(TemporaryError("mailtix is shutting down"))
        return future

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to timeout seconds until nothing is queued or committing; True if so.

        SQLite has one writer and its busy handler sleeps in steps of up to
        100 ms, so a runner that starts transaction after transaction starves
        the committer: senders wait seconds for their 250. A runner that calls
        this before each item lets waiting mail be acknowledged first.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # -- the thread ----------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._take_more(first)
            committed = self.batches
            self._commit(batch)
            with self._lock:
                self._pending -= len(batch)
                if self._pending == 0:
                    self._idle.notify_all()
            if self.batches != committed:
                self._notify()
            if stopping:
                return

    def _take_more(self, first: _Request) -> tuple[list[_Request], bool]:
        batch = [first]
        size = len(first.raw)
        while len(batch) < self._max_batch and size < self._max_bytes:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                break
            if req is None:
                return batch, True
            batch.append(req)
            size += len(req.raw)
        return batch, False

    def _commit(self, batch: list[_Request]) -> None:
        # A session that went away cancelled its future: nobody awaits the 250.
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            self._put(live)
        except TemporaryError as exc:
            for req in live:
                req.future.set_exception(exc)
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            # Something about one message (not the database) failed the batch:
            # store the others one by one so only the culprit is refused.
            log.warning("batch of %d failed (%s); retrying one by one", len(live), exc)
            for req in live:
                try:
                    self._put([req])
                except Exception as one_exc:
                    req.future.set_exception(one_exc)

    def _put(self, reqs: list[_Request]) -> None:
        assert self._store is not None
        results = self._store.put_many([(r.raw, r.env) for r in reqs], self._clock())
        self.batches += 1
        # Resolved only now, after the commit: this is what allows the 250.
        for req, stored in zip(reqs, results, strict=True):
            req.future.set_result(stored)

    def _notify(self) -> None:
        if self._on_commit is None:
            return
        try:
            self._on_commit()
        except Exception:
            # The thread must live on: every session waiting on a future depends on it.
            log.exception("on_commit callback failed")
