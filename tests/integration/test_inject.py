"""`inject`: one raw message from an MTA pipe, stored or refused with the right error."""

from __future__ import annotations

import json

import pytest

from mailtix.config import Config
from mailtix.errors import NotMail, StoreUnavailable, UnknownQueue, outcome_for
from mailtix.inbound.inject import inject
from mailtix.store.db import Database
from tests.integration.smtp_helpers import NOW, message, spooled, unavailable


def test_inject_stores_the_bytes_once(db: Database, config: Config) -> None:
    """A message is stored as given, with source "inject"; injecting it again is a duplicate."""
    first = inject(db, config, message(1), queue="billing", now=NOW)
    again = inject(db, config, message(1), queue="billing", now=NOW)
    assert first.item_id is not None and not first.duplicate
    assert again.duplicate and again.dedupe_key == first.dedupe_key
    (item,) = spooled(db)
    assert (item.raw, item.source, item.queue) == (message(1), "inject", "billing")
    assert json.loads(item.rcpt_to) == []


def test_inject_strips_an_mbox_from_line_and_keeps_its_sender(db: Database, config: Config) -> None:
    """A leading "From sender date" line (Postfix pipe flag F) is dropped; it names the sender."""
    raw = b"From carol@customer.org  Mon Nov 23 12:00:00 2026\n" + message(2)
    inject(db, config, raw, queue=None, now=NOW)
    (item,) = spooled(db)
    assert item.raw == message(2)
    assert item.mail_from == "carol@customer.org"
    assert item.queue is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"hello, this is just text\n",
        b"\x00\x01\x02binary\xff",
        b"\n\nSubject: x\n",
    ],
    ids=["empty", "blank", "text", "binary", "header-after-blank"],
)
def test_input_that_is_not_mail_is_refused_with_65(
    db: Database, config: Config, raw: bytes
) -> None:
    """Empty input, or no header field in the first block, is NotMail (exit 65); nothing stored."""
    with pytest.raises(NotMail) as err:
        inject(db, config, raw, queue=None, now=NOW)
    assert outcome_for(err.value).exit_code == 65
    assert spooled(db) == []


def test_odd_but_mail_like_input_is_accepted(db: Database, config: Config) -> None:
    """Only "not mail at all" is refused: headers without a body, bare LF, odd fields are stored."""
    for raw in (b"Subject: only a header", b"X-Odd : spaced\nFrom: a@b\n\nbody\n"):
        inject(db, config, raw, queue=None, now=NOW)
    assert len(spooled(db)) == 2


def test_unknown_queue_is_refused(db: Database, config: Config) -> None:
    """--queue naming no configured queue is UnknownQueue (exit 75: the MTA keeps it)."""
    with pytest.raises(UnknownQueue) as exc:
        inject(db, config, message(3), queue="nope", now=NOW)
    assert outcome_for(exc.value).exit_code == 75
    assert spooled(db) == []


def test_database_unavailable_is_temporary_and_stores_nothing(db_url: str, config: Config) -> None:
    """With the database down inject raises StoreUnavailable (exit 75); nothing is half-written."""
    db = Database(db_url, busy_timeout=0.2)
    try:
        with unavailable(db_url), pytest.raises(StoreUnavailable) as err:
            inject(db, config, message(4), queue=None, now=NOW)
        assert outcome_for(err.value).exit_code == 75
        assert spooled(db) == []
        assert not inject(db, config, message(4), queue=None, now=NOW).duplicate
    finally:
        db.dispose()
