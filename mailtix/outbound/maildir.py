"""Deliver outgoing mail into a Maildir (the default transport: nothing to set up).

Each message is written under tmp/, flushed to disk, then renamed into new/
(the Maildir rule: a reader never sees half a file). Names follow the
Maildir convention "time.MusecPpidQn_random.host", unique across processes
and threads. The envelope is kept as `Return-Path` and `X-Original-To`
lines on top, as a delivering MTA would write them.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from pathlib import Path

from mailtix.outbound.transport import TemporaryDeliveryError

_counter = itertools.count()  # next() is atomic under the GIL: unique per process


class MaildirTransport:
    """A Transport that files each message into root/new."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # "/" and ":" are not allowed in a Maildir file name's host part.
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._ready = False

    def _ensure_dirs(self) -> None:
        if not self._ready:
            for sub in ("tmp", "new", "cur"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._ready = True

    def _unique_name(self) -> str:
        now = time.time()
        sec, usec = int(now), int((now - int(now)) * 1_000_000)
        rand = secrets.token_hex(4)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}_{rand}.{self._host}"

    def send(self, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        """Write raw (envelope on top, LF line ends) atomically into new/."""
        envelope = f"Return-Path: <{envelope_from}>\n".encode()
        envelope += b"".join(f"X-Original-To: {r}\n".encode() for r in recipients)
        data = envelope + raw.replace(b"\r\n", b"\n")
        name = self._unique_name()
        try:
            self._ensure_dirs()
            tmp = self.root / "tmp" / name
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.root / "new" / name)
        except OSError as err:  # disk full, read-only, permissions: try again later
            raise TemporaryDeliveryError(f"maildir {self.root}: {err}") from err

    def close(self) -> None:
        """Nothing to release."""
