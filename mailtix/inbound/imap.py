"""IMAP mailboxes: a push-driven, crash-safe poller per `[[mailbox]]`.

One `MailboxPoller` per mailbox, each in its own thread (the daemon's), so
one broken mailbox never holds up another. It opens a session (imapconn),
lets its `FolderDrain` (imapdrain) store, commit, then move whatever waits,
and then waits for news: IDLE (RFC 2177) when the server offers it, the poll
interval otherwise. Every fault is one log line, a dropped session and a
capped exponential backoff; mail is never moved unless it was committed.
"""

from __future__ import annotations

import imaplib
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime

from imapclient import IMAPClient

from mailtix.config import Config, MailboxConfig
from mailtix.errors import MailtixError, StoreUnavailable
from mailtix.inbound.imapconn import (
    Backoff,
    LoginFailed,
    MailboxError,
    close_session,
    ensure_folders,
    open_session,
    where,
)
from mailtix.inbound.imapdrain import FolderDrain, PollReport, take_exists
from mailtix.store.db import Database

__all__ = ["Backoff", "LoginFailed", "MailboxError", "MailboxPoller", "PollReport"]

log = logging.getLogger("mailtix.imap")

# RFC 2177 §3: a server may drop a client idle for 30 minutes; re-issue
# IDLE well before ("at least every 29 minutes").
IDLE_RENEW_SECONDS = 25 * 60.0
# How often an IDLE wait looks at the stop event: the bound on run()'s stop latency.
IDLE_SLICE_SECONDS = 0.5


class MailboxPoller:
    """Drains one IMAP folder into the spool: store, commit, then move (one thread each)."""

    def __init__(
        self,
        cfg: Config,
        box: MailboxConfig,
        db: Database,
        clock: Callable[[], datetime],
        *,
        on_commit: Callable[[], None] | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.box = box
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        # connecting | draining | idle | waiting | backoff | stopped: for health reports.
        self.status = "stopped"
        self.drainer = FolderDrain(cfg, box, db, clock, on_commit)  # on_commit: wake the runner
        self._client: IMAPClient | None = None

    # ------------------------------------------------------------ public
    def run(self, stop: threading.Event) -> None:
        """Poll until stop is set; every fault is logged once and retried with backoff."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    self._drain(stop)
                    self._wait_for_mail(stop)
                    failures = 0  # the session survived a whole cycle
                except Exception as err:  # this edge's one catch-all, see below
                    # Like the runner's per-item loop: whatever happens to one
                    # mailbox, its thread keeps trying, and the others go on.
                    self._disconnect(polite=False)
                    delay = self.backoff.delay(failures, self.rng)
                    failures += 1
                    self._log_failure(err, delay)
                    self.status = "backoff"
                    stop.wait(delay)
        finally:
            self._disconnect()
            self.status = "stopped"

    def poll_once(self) -> PollReport:
        """Connect if needed and drain everything waiting; a fault drops the session and raises."""
        try:
            return self._drain(None)
        except (OSError, imaplib.IMAP4.error) as err:
            self._disconnect(polite=False)
            raise MailboxError(f"IMAP session with {where(self.box)} failed: {err}") from err
        except BaseException:
            self._disconnect(polite=False)
            raise

    def close(self) -> None:
        """Log out (poll_once users call this; run() does it itself)."""
        self._disconnect()

    # ------------------------------------------------------------ session
    def _connect_if_needed(self) -> IMAPClient:
        if self._client is None:
            self.status = "connecting"
            client = open_session(self.box, self.cfg.secrets)
            try:
                ensure_folders(client, self.box)
            except BaseException:
                close_session(client)
                raise
            self._client = client
            self.drainer.new_session()
            log.info("mailbox %s: connected as %s", self.box.name, where(self.box))
        return self._client

    def _drain(self, stop: threading.Event | None) -> PollReport:
        client = self._connect_if_needed()
        self.status = "draining"
        return self.drainer.drain(client, stop)

    def _disconnect(self, polite: bool = True) -> None:
        """LOGOUT; after a fault just close the socket (a hung server would stall LOGOUT)."""
        client, self._client = self._client, None
        if client is not None:
            close_session(client, polite=polite)

    def _log_failure(self, err: Exception, delay: float) -> None:
        """One line per failure: what failed, and when the next attempt is."""
        name = self.box.name
        if isinstance(err, StoreUnavailable):
            log.warning("mailbox %s: %s; mail left in place, retrying in %.1f s", name, err, delay)
        elif isinstance(err, LoginFailed):
            log.error("mailbox %s: %s; retrying in %.1f s", name, err, delay)
        elif isinstance(err, MailtixError):
            log.warning("mailbox %s: %s; retrying in %.1f s", name, err, delay)
        elif isinstance(err, (OSError, imaplib.IMAP4.abort)):
            log.warning(
                "mailbox %s: connection to %s:%d lost (%s: %s); retrying in %.1f s",
                name, self.box.host, self.box.port, type(err).__name__, err, delay,
            )  # fmt: skip
        elif isinstance(err, imaplib.IMAP4.error):
            log.warning(
                "mailbox %s: %s:%d refused a command (%s); retrying in %.1f s",
                name, self.box.host, self.box.port, err, delay,
            )  # fmt: skip
        else:
            log.exception("mailbox %s: unexpected error; retrying in %.1f s", name, delay)

    # ------------------------------------------------------------ waiting
    def _wait_for_mail(self, stop: threading.Event) -> None:
        """Return when new mail may be there: IDLE push if offered, else the poll interval."""
        client = self._client
        assert client is not None
        if self.box.idle and client.has_capability("IDLE"):
            self._idle(client, stop)
        else:
            self.status = "waiting"
            stop.wait(self.box.poll_interval)

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """One IDLE command (RFC 2177), ended by new mail, stop, or the renewal deadline.

        IDLE is renewed every poll_interval too: a push the server misses
        (Dovecot can, for mail that lands as IDLE starts) then costs at most
        one interval, never the whole 25 minutes.
        """
        client.idle()  # returns once the server said "+ idling": it is watching
        self.status = "idle"
        deadline = time.monotonic() + min(IDLE_RENEW_SECONDS, self.box.poll_interval)
        # An EXISTS read along with the continuation is not seen by idle_check.
        pending = take_exists(client)
        while not pending and not stop.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            responses = client.idle_check(timeout=IDLE_SLICE_SECONDS)
            if any(r[0] == b"BYE" for r in responses):
                # RFC 3501 §7.1.5: the server is closing (a restart, a shutdown).
                raise MailboxError(f"{self.box.host}:{self.box.port} said BYE")
            if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                break
            if not responses and time.monotonic() - began < IDLE_SLICE_SECONDS / 2:
                # Readable yet no line: imapclient swallows EOF. DONE below
                # meets the closed socket and raises, which reconnects.
                break
        client.idle_done()
