"""`mailtix run`: build every part, start them, and stop them cleanly on SIGTERM/SIGINT.

Order matters on the way down: first stop accepting mail (listener, IMAP),
let what was accepted be committed (group commit drains), then let the
runner finish its current item and the sender its current delivery.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from mailtix.config import Config
from mailtix.inbound.groupcommit import GroupCommitter
from mailtix.inbound.imap import MailboxPoller
from mailtix.inbound.listener import Listener
from mailtix.outbound.sender import Sender
from mailtix.outbound.transport import transport_for
from mailtix.runner import Runner
from mailtix.scheduler import Scheduler
from mailtix.store.db import Database

log = logging.getLogger("mailtix.daemon")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """Every long-running part of mailtix, wired together."""

    def __init__(self, cfg: Config, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.cfg = cfg
        self.clock = clock
        self.db = Database(cfg.database.url, busy_timeout=cfg.database.busy_timeout)
        self.stopping = threading.Event()
        self.sender = Sender(self.db, cfg, transport_for(cfg), clock)
        self.runner = Runner(self.db, cfg, clock, on_processed=self.sender.wake)
        wake = self.runner.wake.set
        self.committer = GroupCommitter(self.db, clock, on_commit=wake)
        # Mail waiting for its 250 goes before tickets (SQLite has one writer).
        self.runner.before_batch = lambda: self.committer.wait_idle(0.25)
        self.listener = Listener(cfg, self.committer) if cfg.listener.enabled else None
        self.pollers = [
            MailboxPoller(cfg, box, self.db, clock, on_commit=wake) for box in cfg.mailbox
        ]
        self.scheduler = Scheduler(self.db, clock)
        self._threads: list[threading.Thread] = []
        self._edge_stop = threading.Event()  # IMAP pollers
        self._work_stop = threading.Event()  # runner and sender
        self.address: tuple[str, int] | None = None

    def start(self) -> None:
        """Migrate the database, then start every part."""
        self.db.upgrade()
        self.committer.start()
        self.scheduler.start()
        self._spawn("mailtix-runner", self.runner.run, self._work_stop)
        self._spawn("mailtix-sender", self.sender.run, self._work_stop)
        for poller in self.pollers:
            self._spawn(f"mailtix-imap-{poller.box.name}", poller.run, self._edge_stop)
        if self.listener is not None:
            self.address = self.listener.start()
            host, port = self.address
            log.info("listening for %s on %s:%d", self.cfg.listener.protocol.upper(), host, port)
        log.info("mailtix is running (%d mailbox poller(s))", len(self.pollers))

    def stop(self) -> None:
        """Stop accepting, drain what was accepted, finish in-flight work, then exit."""
        log.info("stopping: no new mail is accepted")
        if self.listener is not None:
            self.listener.stop()
        self._edge_stop.set()
        self.committer.stop()
        self._work_stop.set()
        self.runner.wake.set()
        self.scheduler.stop()
        for thread in self._threads:
            thread.join(timeout=30)
            if thread.is_alive():
                log.error("%s did not stop within 30 s", thread.name)
        self.runner.close()
        self.db.dispose()
        log.info("stopped")

    def run_until_signalled(self) -> int:
        """Start, wait for SIGTERM or SIGINT (or a part dying), stop; return the exit code."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        code = 0
        try:
            while not self.stopping.wait(1.0):
                dead = [t.name for t in self._threads if not t.is_alive()]
                if dead:
                    # Each loop has its own catch-all; if one still ended, running
                    # on without it would silently stop mail: exit, be restarted.
                    log.error("%s ended unexpectedly; stopping", ", ".join(dead))
                    code = 1
                    break
        finally:
            self.stop()
        return code

    def _spawn(
        self, name: str, target: Callable[[threading.Event], None], stop: threading.Event
    ) -> None:
        thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
