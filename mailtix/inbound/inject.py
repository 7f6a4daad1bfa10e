"""`mailtix inject`: store one raw message given by an MTA pipe (like rt-mailgate).

The exit code tells the MTA what to do: stored (0), try later (75, nothing
half-written: one transaction) or refused for good (65) when the input is
not mail at all. The message is not parsed here; the runner does that.
"""

from __future__ import annotations

from datetime import datetime

from mailtix.config import Config
from mailtix.errors import NotMail, UnknownQueue
from mailtix.services.importer import is_mail, strip_from_line
from mailtix.store import spool
from mailtix.store.db import Database
from mailtix.store.spool import Envelope, Stored


def inject(db: Database, cfg: Config, raw: bytes, *, queue: str | None, now: datetime) -> Stored:
    """Durably store raw; NotMail, UnknownQueue or StoreUnavailable if it cannot be."""
    if queue is not None:
        try:
            cfg.queue_named(queue)
        except KeyError:
            raise UnknownQueue(queue) from None
    # An MTA pipe may prepend the mbox "From sender date" line (Postfix pipe flag F);
    # it is not part of the message, but it names the envelope sender.
    raw, sender = strip_from_line(raw)
    if not is_mail(raw):
        raise NotMail("input is not mail: no header field before the first blank line")
    env = Envelope(source="inject", mail_from=sender, queue=queue)
    with db.write() as session:
        (stored,) = spool.put_many(session, [(raw, env)], now)
    return stored
