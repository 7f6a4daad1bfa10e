"""`import`: an mbox file or a Maildir into the spool, in batches, idempotently."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from mailtix.config import Config
from mailtix.errors import UnknownQueue, UserError
from mailtix.services import importer
from mailtix.services.importer import import_path
from mailtix.store.db import Database
from tests.integration.smtp_helpers import NOW, spooled


def lf_message(n: int, body: bytes = b"Hello.\n") -> bytes:
    """A message as mbox files keep them: LF line ends."""
    return (
        b"From: Carol <carol@customer.org>\nTo: support@example.com\n"
        b"Subject: archived " + str(n).encode() + b"\n"
        b"Message-ID: <old-" + str(n).encode() + b"@customer.org>\n\n" + body
    )


def write_mbox(path: Path, messages: list[bytes]) -> None:
    """An mbox file: each message after its From_ line, a blank line between them."""
    with path.open("wb") as f:
        for n, raw in enumerate(messages):
            f.write(b"From sender" + str(n).encode() + b"@customer.org Mon Nov 23 12:00:00 2026\n")
            f.write(raw + b"\n")


def test_mbox_import_stores_each_message_exactly_and_twice_adds_nothing(
    db: Database, config: Config, tmp_path: Path
) -> None:
    """Each mbox message is stored as its bytes (From_ line stripped); a re-import adds none."""
    messages = [lf_message(n) for n in range(450)]  # more than two batches
    messages[3] = lf_message(3, body=b"Multi\n\nparagraph\n\n")
    box = tmp_path / "archive.mbox"
    write_mbox(box, messages)
    first = import_path(db, config, box, queue="support", now=NOW, progress=False)
    second = import_path(db, config, box, queue="support", now=NOW, progress=False)
    assert (first.total, first.stored, first.duplicates, first.skipped) == (450, 450, 0, [])
    assert (second.total, second.stored, second.duplicates) == (450, 0, 450)
    items = spooled(db)
    assert [i.raw for i in items] == messages
    assert {(i.source, i.queue) for i in items} == {("import", "support")}
    assert items[7].mail_from == "sender7@customer.org"


def test_maildir_import_reads_cur_and_new_and_skips_what_is_not_mail(
    db: Database, config: Config, tmp_path: Path
) -> None:
    """Messages in new/ and cur/ are stored; a file that is not mail is skipped with its reason."""
    md = mailbox.Maildir(tmp_path / "Maildir", create=True)
    new_key = md.add(lf_message(1))
    seen = mailbox.MaildirMessage(lf_message(2))
    seen.set_subdir("cur")
    seen.add_flag("S")
    md.add(seen)
    junk_key = md.add(b"this is not a mail message at all\n")
    md.close()
    assert (tmp_path / "Maildir" / "new" / new_key).exists()
    report = import_path(db, config, tmp_path / "Maildir", queue=None, now=NOW, progress=False)
    again = import_path(db, config, tmp_path / "Maildir", queue=None, now=NOW, progress=False)
    assert (report.total, report.stored, report.duplicates) == (3, 2, 0)
    assert report.skipped == [(f"message {junk_key}", "not mail")]
    assert (again.stored, again.duplicates) == (0, 2)
    assert sorted(i.raw for i in spooled(db)) == [lf_message(1), lf_message(2)]


def test_progress_bar_goes_to_stderr(
    db: Database, config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With progress=True a tqdm bar counting messages is written to stderr, nothing to stdout."""
    box = tmp_path / "small.mbox"
    write_mbox(box, [lf_message(n) for n in range(3)])
    import_path(db, config, box, queue=None, now=NOW, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "3/3" in err and "msg" in err


def test_what_is_not_a_mailbox_is_a_user_error(
    db: Database, config: Config, tmp_path: Path
) -> None:
    """A file that is not an mbox, a plain directory or a missing path is a UserError."""
    text = tmp_path / "notes.txt"
    text.write_text("shopping list\n")
    (tmp_path / "plain").mkdir()
    for path in (text, tmp_path / "plain", tmp_path / "missing"):
        with pytest.raises(UserError):
            import_path(db, config, path, queue=None, now=NOW, progress=False)
    with pytest.raises(UnknownQueue):
        import_path(db, config, text, queue="nope", now=NOW, progress=False)
    assert spooled(db) == []


def test_empty_mbox_imports_nothing(db: Database, config: Config, tmp_path: Path) -> None:
    """An empty mbox file is a valid, empty mailbox."""
    box = tmp_path / "empty.mbox"
    box.write_bytes(b"")
    report = import_path(db, config, box, queue=None, now=NOW, progress=False)
    assert (report.total, report.stored) == (0, 0)


def test_is_mail_looks_only_at_the_first_block() -> None:
    """is_mail: a header field before the first blank line; no parsing."""
    assert importer.is_mail(b"From: a@b\r\n\r\nbody")
    assert importer.is_mail(b"Received: x\n\tfolded\nSubject: y\n")
    assert not importer.is_mail(b"")
    assert not importer.is_mail(b"hello\n\nSubject: late\n")
    assert not importer.is_mail(b": no name\n")
