"""Reading bounces: RFC 3464 reports, prose bounces of common MTAs, VERP tokens."""

from __future__ import annotations

import pytest

from mailtix.core.bounce import BouncedRecipient, BounceReport, parse_bounce, verp_token
from mailtix.core.parse import parse

ORIGINAL = (
    "From: Support <support@example.com>\n"
    "To: gone@example.org\n"
    "Subject: [Ticket #42] Printer on fire\n"
    "Message-ID: <ticket-42-1@example.com>\n"
    "\n"
    "We are on it.\n"
)


def dsn(*recipient_blocks: str, original: str = ORIGINAL, kind: str = "message/rfc822") -> bytes:
    """A Postfix-style RFC 3464 report with the given per-recipient field blocks."""
    blocks = "\n".join(recipient_blocks)
    return (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
        "To: support@example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Message-ID: <bounce-1@mx.example.org>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
        "\n"
        "--B\n"
        "Content-Type: text/plain\n"
        "\n"
        "I'm sorry to have to inform you that your message could not be delivered.\n"
        "\n"
        "--B\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mx.example.org\n"
        "\n"
        f"{blocks}\n"
        "--B\n"
        f"Content-Type: {kind}\n"
        "\n"
        f"{original}\n"
        "--B--\n"
    ).encode()


def read(raw: bytes) -> BounceReport | None:
    return parse_bounce(parse(raw), raw)


# ---------------------------------------------------------------- RFC 3464
def test_dsn_gives_recipient_status_action_and_diagnostic() -> None:
    """RFC 3464 §2.3 per-recipient fields, "smtp;" type prefix removed."""
    report = read(dsn(
        "Final-Recipient: rfc822; Gone@Example.org\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected\n"
    ))
    assert report is not None
    assert report.recipients == (
        BouncedRecipient("gone@example.org", "5.1.1", "failed",
                         "550 5.1.1 <gone@example.org>: Recipient address rejected"),
    )
    assert report.hard
    assert report.original_message_id == "<ticket-42-1@example.com>"


def test_dsn_with_several_recipients_keeps_each() -> None:
    """One block per recipient; a 4.x failure is not hard, a 5.x one is."""
    report = read(dsn(
        "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 4.4.7\n",
        "Final-Recipient: rfc822; b@example.org\nAction: failed\nStatus: 5.2.2\n",
    ))
    assert report is not None
    assert [(r.address, r.hard) for r in report.recipients] == [
        ("a@example.org", False), ("b@example.org", True)]
    assert report.hard


def test_delay_warning_is_not_a_hard_bounce() -> None:
    """Action: delayed means the MTA is still trying (RFC 3464 §2.3.3)."""
    report = read(dsn("Final-Recipient: rfc822; slow@example.org\nAction: delayed\nStatus: 4.4.1"))
    assert report is not None
    assert not report.hard
    assert report.delay_only


def test_original_id_from_returned_headers_only() -> None:
    """text/rfc822-headers (RFC 6522 §4) carries the original Message-ID too."""
    raw = dsn("Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n",
              original=ORIGINAL.split("\n\n")[0], kind="text/rfc822-headers")
    report = read(raw)
    assert report is not None
    assert report.original_message_id == "<ticket-42-1@example.com>"


def test_status_missing_is_read_from_the_diagnostic() -> None:
    """Some MTAs leave Status out or write it badly; the diagnostic often has it."""
    report = read(dsn(
        "Final-Recipient: rfc822; gone@example.org\nAction: failed\n"
        "Diagnostic-Code: smtp; 550-5.7.1 rejected by policy\n"
    ))
    assert report is not None
    assert report.recipients[0].status == "5.7.1"


def test_unindented_continuation_lines_stay_in_their_field() -> None:
    """MessageLabs folds with "550-…" lines (bounces/sisimai-lhost-messagelabs-01.eml)."""
    report = read(dsn(
        "Diagnostic-Code: smtp; 550-Please turn on SMTP Authentication\n"
        "550 relay through this server without authentication.\n"
        "Status: 5.0.0\nAction: failed\nFinal-Recipient: rfc822; gone@example.org\n"
    ))
    assert report is not None
    (recipient,) = report.recipients
    assert recipient.address == "gone@example.org"
    assert recipient.status == "5.0.0"
    assert recipient.diagnostic is not None and "without authentication" in recipient.diagnostic


def test_cr_only_line_endings_are_read() -> None:
    """Classic Mac files (malformed/sisimai-mac-*.eml) still give their report."""
    raw = dsn("Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n")
    report = read(raw.replace(b"\n", b"\r"))
    assert report is not None
    assert report.recipients[0].address == "gone@example.org"


# ------------------------------------------------------------- prose bounces
def prose(subject: str, body: str, *, extra: str = "") -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\n"
        "To: support@example.com\n"
        f"Subject: {subject}\n{extra}"
        "\n" + body
    ).encode()


def test_exim_bounce_with_copy_of_the_original() -> None:
    """Exim: X-Failed-Recipients, indented reasons, and the original after the marker."""
    raw = prose(
        "Mail delivery failed: returning message to sender",
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        "  gone@example.org\n"
        "    SMTP error from remote mail server after RCPT TO:<gone@example.org>:\n"
        "    host mx.example.org [192.0.2.1]: 550 5.1.1 No such user\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
        + ORIGINAL,
        extra="X-Failed-Recipients: gone@example.org\n",
    )
    report = read(raw)
    assert report is not None
    (recipient,) = report.recipients
    assert (recipient.address, recipient.status, recipient.action) == (
        "gone@example.org", "5.1.1", "failed")
    assert report.original_message_id == "<ticket-42-1@example.com>"


def test_postfix_prose_line_without_a_report() -> None:
    """'<addr>: host … said: 550 …' in the text (old Postfix, no DSN part)."""
    raw = prose(
        "Undelivered Mail Returned to Sender",
        "This is the mail system at host mx.example.org.\n\n"
        "<gone@example.org>: host mx2.example.org[192.0.2.2] said: 550 5.1.1\n"
        "    <gone@example.org>: Recipient address rejected (in reply to RCPT TO command)\n",
    )
    report = read(raw)
    assert report is not None
    assert report.recipients[0].address == "gone@example.org"
    assert report.recipients[0].status == "5.1.1"
    assert report.hard


def test_qmail_bounce() -> None:
    """qmail: '<addr>:' then the remote host's words (bounces/sisimai-lhost-qmail-01.eml)."""
    raw = prose(
        "failure notice",
        "Hi. This is the qmail-send program at mx.example.org.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<gone@example.org>:\n"
        "192.0.2.3 does not like recipient.\n"
        "Remote host said: 550 5.1.1 unknown user\n"
        "Giving up on 192.0.2.3.\n\n"
        "--- Below this line is a copy of the message.\n\n" + ORIGINAL,
    )
    report = read(raw)
    assert report is not None
    assert [r.address for r in report.recipients] == ["gone@example.org"]
    assert report.recipients[0].status == "5.1.1"
    assert report.original_message_id == "<ticket-42-1@example.com>"


def test_exchange_undeliverable() -> None:
    """Exchange 2003: 'addr on <date>', then why (bounces/bounceparser-exchange.unknown.eml)."""
    raw = (
        b"From: System Administrator <postmaster@example.org>\n"
        b"To: support@example.com\n"
        b"Subject: Undeliverable: [Ticket #42] Printer on fire\n\n"
        b"Your message\n\n  To:      gone\n  Subject: [Ticket #42] Printer on fire\n\n"
        b"did not reach the following recipient(s):\n\n"
        b"GONE@EXAMPLE.ORG on Wed, 15 Feb 2006 04:25:29 -0500\n"
        b"    The recipient name is not recognized\n"
    )
    report = read(raw)
    assert report is not None
    (recipient,) = report.recipients
    assert recipient.address == "gone@example.org"
    assert recipient.diagnostic == "The recipient name is not recognized"


def test_bounce_naming_nothing_gives_none() -> None:
    """No recipient and no original: nothing to record."""
    assert read(prose("failure notice", "Something went wrong.\n")) is None


def test_original_id_from_in_reply_to_as_last_resort() -> None:
    """Some MTAs thread the bounce to the original (bounces/bounceparser-warning-5.eml)."""
    raw = prose("Delivery failure", "You sent mail to gone@example.org. That's not a valid user.\n",
                extra="In-Reply-To: <ticket-42-1@example.com>\n")
    report = read(raw)
    assert report is not None
    assert report.original_message_id == "<ticket-42-1@example.com>"
    assert report.recipients[0].address == "gone@example.org"


# --------------------------------------------------------------------- VERP
@pytest.mark.parametrize(
    ("rcpt", "template", "token"),
    [
        ("bounces+abc123@example.com", "bounces+{token}@example.com", "abc123"),
        ("<Bounces+abc123@Example.COM>", "bounces+{token}@example.com", "abc123"),
        ("bounces+abc123@example.com", "bounces+{token}@", "abc123"),
        ("support@example.com", "bounces+{token}@example.com", None),
        ("bounces+@example.com", "bounces+{token}@example.com", None),
        ("bounces+abc@other.example", "bounces+{token}@example.com", None),
        ("bounces+a b@example.com", "bounces+{token}@example.com", None),
        ("bounces+abc@example.com", "bounces@example.com", None),
    ],
)
def test_verp_token_reads_our_return_path(rcpt: str, template: str, token: str | None) -> None:
    """The token between the template's prefix and suffix, or None if it is not ours."""
    assert verp_token(rcpt, template) == token
