"""`mailtix import PATH`: store every message of an mbox file or a Maildir.

Messages are streamed (never a whole mbox in memory) and stored in batches,
one transaction per batch, through the spool; its dedupe key makes a second
import of the same mailbox add nothing. Nothing is parsed here either.
"""

from __future__ import annotations

import mailbox
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from mailtix.config import Config
from mailtix.errors import UnknownQueue, UserError
from mailtix.store import spool
from mailtix.store.db import Database
from mailtix.store.spool import Envelope

BATCH = 200
BATCH_BYTES = 32 * 1024 * 1024
# How far into a message is_mail looks for a header field (it must stay cheap).
_SNIFF_BYTES = 64 * 1024
# RFC 5322 §2.2: a field name is printable ASCII but ":"; obsolete syntax allows
# white space before the colon (§4.5).
_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:", re.MULTILINE)
_BLANK = re.compile(rb"\r?\n\r?\n")


def is_mail(raw: bytes) -> bool:
    """Whether raw is mail at all: a header field in its first block (no parsing)."""
    head = raw[:_SNIFF_BYTES]
    if head.startswith((b"\n", b"\r\n")):
        return False  # the first block is empty: a body without a header
    blank = _BLANK.search(head)
    if blank is not None:
        head = head[: blank.start()]
    return _FIELD.search(head) is not None


def strip_from_line(raw: bytes) -> tuple[bytes, str]:
    """raw without a leading mbox `From sender date` line, and that sender ("" if none)."""
    if not raw.startswith(b"From "):
        return raw, ""
    line, _, rest = raw.partition(b"\n")
    sender = line[5:].split(b" ", 1)[0].strip()
    return rest, sender.decode("ascii", "replace")


class _Entry(NamedTuple):
    where: str
    raw: bytes | None  # None: could not be read, see problem
    sender: str = ""
    problem: str = ""


@dataclass
class ImportReport:
    """What an import did: counts, and each skipped message with its reason."""

    total: int = 0
    stored: int = 0
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def import_path(
    db: Database,
    cfg: Config,
    path: Path,
    *,
    queue: str | None,
    now: datetime,
    progress: bool = True,
) -> ImportReport:
    """Store every message of the mbox file or Maildir at path; idempotent."""
    if queue is not None:
        try:
            cfg.queue_named(queue)
        except KeyError:
            raise UnknownQueue(queue) from None
    report = ImportReport()
    box = _open(path)
    try:
        with tqdm(
            total=len(box), unit="msg", file=sys.stderr, disable=not progress, desc=path.name
        ) as bar:
            batch: list[tuple[bytes, Envelope]] = []
            size = 0
            for entry in _messages(box):
                report.total += 1
                bar.update(1)
                if entry.raw is None or not is_mail(entry.raw):
                    report.skipped.append((entry.where, entry.problem or "not mail"))
                    continue
                env = Envelope(source="import", mail_from=entry.sender, queue=queue)
                batch.append((entry.raw, env))
                size += len(entry.raw)
                if len(batch) >= BATCH or size >= BATCH_BYTES:
                    _store(db, batch, now, report)
                    batch, size = [], 0
            _store(db, batch, now, report)
    finally:
        box.close()
    return report


def _open(path: Path) -> mailbox.Mailbox:
    if path.is_dir():
        if not ((path / "cur").is_dir() or (path / "new").is_dir()):
            raise UserError(f"{path}: a directory but not a Maildir (no cur/ or new/)")
        return mailbox.Maildir(path, factory=None, create=False)
    if not path.is_file():
        raise UserError(f"{path}: no such file or directory")
    with path.open("rb") as f:
        start = f.read(5)
    if start and start != b"From ":
        raise UserError(f"{path}: not an mbox file (it does not start with 'From ')")
    return mailbox.mbox(path, factory=None, create=False)


def _messages(box: mailbox.Mailbox) -> Iterator[_Entry]:
    """Each message of box, read one at a time."""
    for key in box.iterkeys():
        where = f"message {key}"
        try:
            if isinstance(box, mailbox.mbox):
                # With the From_ line, which names the envelope sender.
                with box.get_file(key, from_=True) as f:
                    raw, sender = strip_from_line(f.read())
            else:
                raw, sender = box.get_bytes(key), ""
        except (OSError, KeyError) as exc:
            # A Maildir file that vanished or cannot be read (another MUA moved it).
            yield _Entry(where, None, problem=f"unreadable: {exc}")
            continue
        yield _Entry(where, raw, sender)


def _store(
    db: Database, batch: list[tuple[bytes, Envelope]], now: datetime, report: ImportReport
) -> None:
    if not batch:
        return
    with db.write() as session:
        results = spool.put_many(session, batch, now)
    for stored in results:
        if stored.duplicate:
            report.duplicates += 1
        else:
            report.stored += 1
