"""Deliver due outbox rows through a Transport: sent, retried with backoff, or failed.

Guarantee (README "Delivery guarantee"): at least once. A row is marked sent
only after the smarthost's final 250 to DATA (RFC 5321 §4.1.1.4: from then
on the message is its responsibility). If mailtix dies between that 250 and
the commit of "sent", the row's claim lease runs out and the row is sent
once more, with the same Message-ID, so clients and MTAs that dedupe by
Message-ID show it once. Nothing is ever marked sent that was not accepted.

Temporary failures (4xx, no connection, timeout) are retried after a capped
exponential backoff with jitter; a permanent failure (5xx), or running out
of attempts, marks the row failed, records an event on its ticket and tells
the ticket's agents (services.notify.on_delivery_failed).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from mailtix.config import Config
from mailtix.errors import StoreUnavailable
from mailtix.outbound.transport import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    Transport,
)
from mailtix.services import notify
from mailtix.store import outbox
from mailtix.store.db import Database
from mailtix.store.outbox import Claim

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Random = Callable[[], float]
# Rows claimed at once per connection. With the lease below, a claimed batch
# is always delivered (or timed out) before its lease ends.
PER_CONNECTION_BATCH = 10


@dataclass
class SendReport:
    """What one pass delivered: rows sent, put back for a retry, failed for good."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    def add(self, other: SendReport) -> None:
        """Add other's counts to these."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed

    @property
    def total(self) -> int:
        return self.sent + self.retried + self.failed


def backoff_seconds(attempts: int, base: float, cap: float, rng: Random = random.random) -> float:
    """Delay before attempt attempts+1: base·2^(attempts-1), capped, "equal jitter" in [d/2, d]."""
    delay = min(cap, base * (2 ** min(attempts - 1, 62)))
    return delay / 2 + rng() * delay / 2


def lease_for(cfg: Config) -> timedelta:
    """How long a claim lasts: room for a whole batch of timeouts, plus a minute."""
    # Worst case per message: a connect and one operation both running into
    # the timeout (a failed link is dropped, so it never costs more). A claim
    # is made while each connection has at most one row in flight, so a row
    # waits behind at most PER_CONNECTION_BATCH others.
    return timedelta(seconds=(PER_CONNECTION_BATCH + 1) * 2 * cfg.outbound.timeout + 60)


def _deliver(transport: Transport, claim: Claim) -> Exception | None:
    """Send one claimed row; the error if it failed (None: accepted)."""
    envelope = outbox.envelope_sender(claim.envelope_from, claim.id)
    try:
        transport.send(envelope, list(claim.recipients), claim.raw)
    except (TemporaryDeliveryError, PermanentDeliveryError) as err:
        return err
    except Exception as err:  # a transport bug must not stop the other rows
        log.exception("outbox %s: unexpected transport error", claim.id)
        return TemporaryDeliveryError(f"{type(err).__name__}: {err}")
    return None


def _record(
    db: Database,
    cfg: Config,
    outcomes: list[tuple[Claim, Exception | None]],
    now: datetime,
    rng: Random,
) -> SendReport:
    """Commit the outcomes of some deliveries, in one transaction."""
    report = SendReport()
    with db.write() as s:
        sent = [claim.id for claim, err in outcomes if err is None]
        report.sent = outbox.mark_sent_many(s, sent, now) if sent else 0
        for claim, err in outcomes:
            if err is None:
                continue
            if _retry_or_fail(s, cfg, claim, err, now, rng):
                report.retried += 1
            else:
                report.failed += 1
    return report


def _retry_or_fail(
    s: Session, cfg: Config, claim: Claim, err: Exception, now: datetime, rng: Random
) -> bool:
    """Schedule a retry (True) or fail the row for good (False)."""
    out = cfg.outbound
    error = str(err)[:2000]
    permanent = isinstance(err, PermanentDeliveryError)
    if not permanent and claim.attempts < out.max_attempts:
        delay = backoff_seconds(claim.attempts, out.retry_base_seconds, out.retry_max_seconds, rng)
        outbox.mark_retry(s, claim.id, now + timedelta(seconds=delay), error)
        log.info(
            "outbox %s: attempt %d failed, retry in %.0fs: %s",
            claim.id,
            claim.attempts,
            delay,
            error,
        )
        return True
    if not permanent:
        error = f"gave up after {claim.attempts} attempts: {error}"
    if outbox.mark_failed(s, claim.id, error, now):
        notify.on_delivery_failed(
            s,
            cfg,
            ticket_id=claim.ticket_id,
            outbox_id=claim.id,
            kind=claim.kind,
            message_id=claim.message_id,
            recipients=claim.recipients,
            error=error,
            now=now,
        )
    log.warning("outbox %s failed for good: %s", claim.id, error)
    return False


def _claim(db: Database, cfg: Config, now: datetime) -> list[Claim]:
    limit = PER_CONNECTION_BATCH * cfg.outbound.connections
    with db.write() as s:
        return outbox.claim_due(s, now, limit, lease_for(cfg))


def _drain(
    db: Database,
    cfg: Config,
    transport: Transport,
    now: datetime,
    rng: Random,
    pool: ThreadPoolExecutor,
    stop: threading.Event | None = None,
) -> SendReport:
    """Deliver what is due at now through pool, as a pipeline: claim, deliver, commit.

    Once stop is set, nothing more is claimed; what is in flight finishes and is recorded.
    """
    report = SendReport()
    pending: dict[Future[Exception | None], Claim] = {}
    dry = False  # the last claim found nothing: wait for what is in flight first
    while True:
        # Claim more while the connections still have work, so claiming
        # overlaps delivery. Rows enqueued meanwhile (failure notices) are
        # due at now too: claim once more when all is done.
        stopping = stop is not None and stop.is_set()
        if not stopping and (not pending or (len(pending) <= cfg.outbound.connections and not dry)):
            claims = _claim(db, cfg, now)
            dry = not claims
            for claim in claims:
                pending[pool.submit(_deliver, transport, claim)] = claim
        if not pending:
            return report
        # Group commit: what finished while the last outcomes were committed
        # is committed together. A crash re-sends only rows delivered but not
        # yet committed, each once (their lease must end first).
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        outcomes = [(pending.pop(f), f.result()) for f in done]
        report.add(_record(db, cfg, outcomes, now, rng))


def _pool(cfg: Config) -> ThreadPoolExecutor:
    # One thread per connection; with one, delivery still overlaps the commits.
    return ThreadPoolExecutor(cfg.outbound.connections, thread_name_prefix="mailtix-send")


def send_pending(
    db: Database, cfg: Config, transport: Transport, now: datetime, *, rng: Random = random.random
) -> SendReport:
    """Deliver every row due at now (`mailtix send-pending`) and return the counts."""
    with _pool(cfg) as pool:
        return _drain(db, cfg, transport, now, rng, pool)


class Sender:
    """The daemon's delivery loop: wakes when told to, when a row falls due, or every poll."""

    def __init__(
        self,
        db: Database,
        cfg: Config,
        transport: Transport,
        clock: Clock,
        *,
        rng: Random = random.random,
        poll_interval: float | None = None,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.transport = transport
        self.clock = clock
        self.rng = rng
        # Mail enqueued by another process (mailtix inject) is seen at the next poll.
        self.poll_interval = poll_interval if poll_interval is not None else cfg.spool.poll_interval
        self._wakeup = threading.Event()
        self._finished = threading.Event()
        self._stop: threading.Event | None = None

    def wake(self) -> None:
        """Deliver now: call after committing new outbox rows."""
        self._wakeup.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until stop is set; then in-flight deliveries finish and it returns."""
        self._finished.clear()
        self._stop = stop
        watcher = threading.Thread(
            target=self._wake_on, args=(stop,), daemon=True, name="mailtix-sender-stop"
        )
        watcher.start()
        pool = _pool(self.cfg)
        try:
            while not stop.is_set():
                self._wakeup.clear()
                timeout = self._pass(pool)
                if not stop.is_set():
                    self._wakeup.wait(timeout)
        finally:
            self._finished.set()
            watcher.join()
            pool.shutdown(wait=True)

    def _wake_on(self, stop: threading.Event) -> None:
        # Turns stop.set() into a wake-up, so run() waits on one Event only.
        while not stop.wait(0.5):
            if self._finished.is_set():
                return
        self._wakeup.set()

    def _pass(self, pool: ThreadPoolExecutor) -> float:
        """One delivery pass; the seconds to wait before the next one."""
        try:
            report = _drain(
                self.db, self.cfg, self.transport, self.clock(), self.rng, pool, self._stop
            )
            if report.total:
                log.info(
                    "outbox: %d sent, %d to retry, %d failed",
                    report.sent,
                    report.retried,
                    report.failed,
                )
            with self.db.read() as s:
                due = outbox.next_due(s)
        except StoreUnavailable as err:
            log.warning("outbox: database unavailable, retrying: %s", err)
            return self.poll_interval
        except Exception:
            # A bug or a broken template must not end delivery for good: logged,
            # and the next pass comes (the claimed rows' lease brings them back).
            log.exception("outbox: delivery pass failed; retrying")
            return self.poll_interval
        if due is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, (due - self.clock()).total_seconds()))
