"""Emptying one selected IMAP folder into the spool: store, commit, then move.

For every chunk of up to 500 UIDs:

1. `UID FETCH RFC822.SIZE`: anything over the listener's size limit is set
   aside (moved to `oversize_folder`, or left in place) with a logged reason;
2. `UID FETCH BODY.PEEK[]`, `batch_size` messages at a time (PEEK: RFC 3501
   §6.4.5, a plain `BODY[]` or `RFC822` would set `\\Seen` on the user's mail);
3. per fetched batch: `spool.put_many` and the mailbox's position in ONE
   transaction, COMMIT;
4. only then `UID MOVE` to `processed_folder` (RFC 6851), or COPY +
   `\\Deleted` + `UID EXPUNGE` (RFC 4315 §2.1) on servers without MOVE.

A crash between 3 and 4 leaves stored mail in the folder. That is why every
new session first sweeps the folder from UID 1: such mail is fetched again,
the spool recognises it (`Stored.duplicate`), and it is moved. The same
sweep is the resync after a changed UIDVALIDITY (RFC 3501 §2.3.1.1), so a
rebuilt server index never turns into a storm of new tickets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from imapclient import IMAPClient

from mailtix.config import Config, MailboxConfig
from mailtix.core.fingerprint import header_fields, split_head
from mailtix.store import mailboxes, spool
from mailtix.store.db import Database
from mailtix.store.spool import Envelope

log = logging.getLogger("mailtix.imap")

# Bodies held in memory at once, whatever batch_size says (25 MB messages exist).
BATCH_BYTES = 16 * 1024 * 1024
# UIDs size-checked and moved per command; bodies are fetched batch_size at a time.
MOVE_BATCH = 500


@dataclass
class PollReport:
    """What one drain of a mailbox did."""

    stored: int = 0  # new spool items
    duplicates: int = 0  # already in the spool (a crash before the MOVE, a resync)
    moved: int = 0  # moved to processed_folder
    oversize: int = 0  # over the size limit: moved to oversize_folder or left in place
    resynced: bool = False  # UIDVALIDITY changed: swept from UID 1


class FolderDrain:
    """One mailbox's position in its folder (UIDVALIDITY, last UID) and how to empty it."""

    def __init__(
        self,
        cfg: Config,
        box: MailboxConfig,
        db: Database,
        clock: Callable[[], datetime],
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.box = box
        self.db = db
        self.clock = clock
        self.on_commit = on_commit
        self._uidvalidity: int | None = None
        self._last_uid = 0  # the highest UID handled in this UIDVALIDITY
        self._swept = False  # swept from UID 1 since the session opened

    def new_session(self) -> None:
        """Forget the session's view: reload the position, sweep from UID 1 again."""
        self._uidvalidity = None
        self._swept = False

    def drain(self, client: IMAPClient, stop: threading.Event | None = None) -> PollReport:
        """Store and move everything waiting in the folder; stop (if set) ends it early."""
        report = PollReport()
        self._select(client, report)
        # RFC 3501 §7: the server may announce new mail (EXISTS) in the reply
        # to any of our commands, and then never again in IDLE; so pass over
        # the folder until a pass ends without such news.
        while True:
            take_exists(client)
            # A new session sweeps from UID 1 (see the module docstring); later
            # passes only look above the last UID handled. "n:*" always matches
            # the highest UID even below n (RFC 3501 §6.4.8), hence the filter.
            # UNDELETED: a message flagged \Deleted is on its way out (ours after
            # a COPY whose EXPUNGE was cut short, or a person's decision).
            start = self._last_uid + 1 if self._swept else 1
            found = client.search(["UID", f"{start}:*", "UNDELETED"])
            uids = sorted(u for u in found if u >= start)
            for chunk in _chunks(uids, MOVE_BATCH):
                if stop is not None and stop.is_set():
                    return report
                self._handle_chunk(client, chunk, report)
            self._swept = True
            if not take_exists(client):
                return report

    def _select(self, client: IMAPClient, report: PollReport) -> None:
        """SELECT the folder (every drain: UIDVALIDITY is only reported there) and check it."""
        info = client.select_folder(self.box.folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        if self._uidvalidity is None:
            with self.db.read() as session:
                state = mailboxes.get_state(session, self.box.name)
            if state is not None and state.uidvalidity is not None:
                self._uidvalidity, self._last_uid = state.uidvalidity, state.last_uid
        if self._uidvalidity is not None and self._uidvalidity != uidvalidity:
            log.warning(
                "mailbox %s: UIDVALIDITY of %s changed from %d to %d; resyncing from UID 1 "
                "(mail already stored is recognised and only moved)",
                self.box.name, self.box.folder, self._uidvalidity, uidvalidity,
            )  # fmt: skip
            report.resynced = True
            self._last_uid = 0
            self._swept = False
            self._save_position(uidvalidity, 0)
        self._uidvalidity = uidvalidity

    def _handle_chunk(self, client: IMAPClient, uids: list[int], report: PollReport) -> None:
        """Set aside what is too large; store the rest group by group; then move it at once."""
        sizes = {
            uid: int(item[b"RFC822.SIZE"])
            for uid, item in client.fetch(uids, ["RFC822.SIZE"]).items()
            if b"RFC822.SIZE" in item
        }  # a UID missing here was expunged by someone else meanwhile
        limit = self.cfg.listener.max_message_bytes
        big = [u for u in uids if sizes.get(u, 0) > limit]
        if big:
            self._set_aside(client, big, sizes, report)
        stored: list[int] = []
        group: list[int] = []
        group_bytes = 0
        for uid in (u for u in uids if u in sizes and sizes[u] <= limit):
            if group and (
                len(group) == self.box.batch_size or group_bytes + sizes[uid] > BATCH_BYTES
            ):
                stored += self._store(client, group, report)
                group, group_bytes = [], 0
            group.append(uid)
            group_bytes += sizes[uid]
        if group:
            stored += self._store(client, group, report)
        # Only now, with every COMMIT done, may the mail leave the folder. One
        # MOVE per chunk: it costs about as much for 500 messages as for 50.
        if stored:
            self._move(client, stored, self.box.processed_folder)
            report.moved += len(stored)
        if uids[-1] > self._last_uid:  # the chunk ended with mail set aside or gone
            self._save_position(self._require_uidvalidity(), uids[-1])

    def _store(self, client: IMAPClient, uids: list[int], report: PollReport) -> list[int]:
        """Fetch uids and commit them to the spool with our position; the UIDs fetched."""
        fetched = client.fetch(uids, ["BODY.PEEK[]"])
        present = [u for u in uids if b"BODY[]" in fetched.get(u, {})]
        messages = [(fetched[u][b"BODY[]"], self._envelope(fetched[u][b"BODY[]"])) for u in present]
        del fetched
        now = self.clock()
        # A sweep from UID 1 meets old leftovers: the position never goes back.
        position = max(self._last_uid, uids[-1])
        with self.db.write() as session:
            results = spool.put_many(session, messages, now)
            mailboxes.set_state(session, self.box.name, self._require_uidvalidity(), position, now)
        self._last_uid = position
        new = sum(1 for r in results if not r.duplicate)
        report.stored += new
        report.duplicates += len(results) - new
        if new and self.on_commit is not None:
            self.on_commit()
        return present

    def _set_aside(
        self, client: IMAPClient, uids: list[int], sizes: dict[int, int], report: PollReport
    ) -> None:
        """Move oversize mail to oversize_folder, or leave it; say why, once per message."""
        target = self.box.oversize_folder
        action = f"moved to {target}" if target else "left in place"
        limit = self.cfg.listener.max_message_bytes
        for uid in uids:
            # A message left in place is met again by each session's sweep:
            # only its first sighting (above the saved position) is a warning.
            level = logging.WARNING if uid > self._last_uid else logging.DEBUG
            log.log(
                level, "mailbox %s: UID %d of %s is %d bytes, over the limit of %d; %s",
                self.box.name, uid, self.box.folder, sizes[uid], limit, action,
            )  # fmt: skip
        if target:
            self._move(client, uids, target)
        report.oversize += len(uids)

    def _move(self, client: IMAPClient, uids: Sequence[int], folder: str) -> None:
        """UID MOVE (RFC 6851), or COPY + \\Deleted + expunge where MOVE is missing."""
        if client.has_capability("MOVE"):
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.delete_messages(uids, silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)  # RFC 4315 §2.1: expunges ours only
        else:
            client.expunge()  # also removes others' \Deleted mail; no better way without UIDPLUS

    def _save_position(self, uidvalidity: int, last_uid: int) -> None:
        with self.db.write() as session:
            mailboxes.set_state(session, self.box.name, uidvalidity, last_uid, self.clock())
        self._last_uid = last_uid

    def _require_uidvalidity(self) -> int:
        assert self._uidvalidity is not None, "the folder is selected before anything is stored"
        return self._uidvalidity

    def _envelope(self, raw: bytes) -> Envelope:
        """What the final MTA recorded of the envelope (RFC 5321 §4.4, RFC 9228)."""
        mail_from, rcpt = "", ""
        for name, value in header_fields(split_head(raw)[0]):
            # The topmost of each is the final hop's; later ones are older.
            if name == b"return-path" and not mail_from:
                mail_from = value.decode("ascii", "replace").strip().strip("<>")
            elif name == b"delivered-to" and not rcpt:
                rcpt = value.decode("ascii", "replace").strip()
        return Envelope(
            source=f"imap:{self.box.name}",
            mail_from=mail_from,
            rcpt_to=(rcpt,) if rcpt else (),
            queue=self.box.queue,
        )


def take_exists(client: IMAPClient) -> bool:
    """Whether an EXISTS came with a reply since the last call; forget it.

    imaplib keeps untagged responses of past commands in `untagged_responses`
    (SELECT clears it); imapclient offers no public view of them.
    """
    return client._imap.untagged_responses.pop("EXISTS", None) is not None


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
