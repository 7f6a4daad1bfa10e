"""Build the bytes of an outgoing message: headers, text + HTML, attachments.

We write what the compat32 classes (`MIMEMultipart`/`MIMEText`) would write,
byte for byte, without building them: text parts are quoted-printable UTF-8
from `Charset.body_encode`, and a header goes through compat32's folding
(`policy.fold_binary`) unless it is ASCII and fits on one 78-character line,
where folding would change nothing (RFC 5322 §2.1.1). That halves the cost
of a notice (bench/runner.py); attachments still use `MIMEBase`. The
compat32 classes were measured at ~1.2 ms for a text+HTML reply against
~3.5 ms for `EmailMessage` with `policy.default` (bench/outbound.py).
compat32 does not protect headers for us, so every
header value goes through `clean_header` first: no CR, LF or other control
character from customer text can end a header and start another (RFC 5322
§2.2), and a value that contains "=?" is itself encoded, so an encoded word a
customer typed is shown as typed rather than decoded by the reader (RFC 2047
§5, an encoded newline included).
"""

from __future__ import annotations

import random
import re
import sys
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import encoders, policy
from email.charset import QP, Charset
from email.header import Header
from email.mime.base import MIMEBase
from email.utils import format_datetime, formataddr

# Quoted-printable bodies and headers: readable, 7-bit safe for any smarthost
# (no reliance on 8BITMIME, RFC 6152).
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP
_UTF8.header_encoding = QP
# CRLF on the wire (RFC 5322 §2.1); smtplib sends bytes as they are.
_WIRE = policy.compat32.clone(linesep="\r\n")
_CRLF = "\r\n"
_NEWLINES = re.compile(r"\r\n|\r|\n")
_MAX_LINE = 78  # compat32 folds longer header lines (RFC 5322 §2.1.1)
_TEXT_HEADERS = {
    subtype: (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
    )
    for subtype in ("plain", "html")
}


@dataclass(frozen=True)
class Address:
    """A mailbox: address and display name."""

    email: str
    name: str = ""


@dataclass(frozen=True)
class Attachment:
    """A file to attach."""

    filename: str
    content_type: str
    payload: bytes


@dataclass(frozen=True)
class Headers:
    """The headers of one outgoing message (values are clean-ed on output)."""

    from_: Address
    to: tuple[Address, ...]
    subject: str
    message_id: str
    date: datetime
    cc: tuple[Address, ...] = ()
    reply_to: Address | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # RFC 3834 §5: "auto-replied" for answers to a message, "auto-generated"
    # for scheduled mail.
    auto_submitted: str = "auto-replied"
    extra: tuple[tuple[str, str], ...] = ()


def clean_header(value: str) -> str:
    """value on one line: control characters and line separators become spaces."""
    if not value.isprintable():  # printable text has no Cc, Zl or Zp character
        value = "".join(
            " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in value
        )
    return " ".join(value.split())


def _text(value: str) -> str | Header:
    value = clean_header(value)
    if value.isascii() and "=?" not in value:
        return value
    return Header(value, _UTF8)


class _Mailboxes:
    """Formats mailboxes for headers; keeps aside those only RFC 6532 can write."""

    def __init__(self) -> None:
        self.utf8: dict[bytes, bytes] = {}

    def __call__(self, a: Address) -> str:
        local, _, domain = clean_header(a.email).replace(" ", "").rpartition("@")
        domain = _ascii_domain(domain)
        name = clean_header(a.name)
        if local.isascii():
            # formataddr quotes specials and encodes a non-ASCII name (RFC 2047 §5(3)).
            return formataddr((name, f"{local}@{domain}"), charset=_UTF8)
        # A non-ASCII local part has no ASCII form: write it as UTF-8 (RFC 6532
        # §3.2; the transport asks for SMTPUTF8). compat32 would encode the
        # whole mailbox as one encoded word, so a placeholder stands in for it
        # until the bytes exist.
        placeholder = f"mailtix-utf8-{len(self.utf8)}@utf8.invalid"
        self.utf8[placeholder.encode()] = f"{local}@{domain}".encode()
        return formataddr((name, placeholder), charset=_UTF8)

    def restore(self, raw: bytes) -> bytes:
        """raw with every placeholder replaced by its UTF-8 address."""
        for placeholder, address in self.utf8.items():
            raw = raw.replace(placeholder, address)
        return raw


def idna_address(address: str) -> str:
    """address with its domain in ASCII (IDNA A-labels); the local part as it is."""
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{_ascii_domain(domain)}" if at else address


def _ascii_domain(domain: str) -> str:
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")  # RFC 5890 A-labels
    except UnicodeError:
        return domain


def new_message_id(domain: str, ticket_id: int | None = None) -> str:
    """A fresh, globally unique Message-ID on our domain (RFC 5322 §3.6.4)."""
    left = f"mailtix.{ticket_id}.{uuid.uuid4().hex}" if ticket_id is not None else (
        f"mailtix.{uuid.uuid4().hex}"
    )
    return f"<{left}@{domain}>"


def _header(name: str, value: str | Header) -> str:
    """One header field as compat32 writes it, CRLF included."""
    if isinstance(value, str) and value.isascii() and len(name) + 2 + len(value) <= _MAX_LINE:
        return f"{name}: {value}{_CRLF}"  # what folding returns for a line that fits
    return _WIRE.fold_binary(name, value).decode("ascii", "surrogateescape")


def _quoted_printable(text: str) -> str:
    """text as a quoted-printable UTF-8 body with CRLF line ends, as MIMEText encodes it."""
    return _NEWLINES.sub(_CRLF, _UTF8.body_encode(text.encode("utf-8")) if text else "")


def _boundary(parts: Sequence[bytes]) -> str:
    """A multipart boundary in compat32's form that occurs in none of parts (RFC 2046 §5.1.1)."""
    while True:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
        marker = b"--" + boundary.encode()
        if not any(marker in part for part in parts):
            return boundary


def _multipart(subtype: str, parts: Sequence[bytes]) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart entity made of parts (each headers + body)."""
    boundary = _boundary(parts)
    delimiter = f"{_CRLF}--{boundary}{_CRLF}".encode()
    body = (
        f"--{boundary}{_CRLF}".encode()
        + delimiter.join(parts)
        + f"{_CRLF}--{boundary}--{_CRLF}".encode()
    )
    return f'multipart/{subtype}; boundary="{boundary}"', body


def _text_part(text: str, subtype: str) -> bytes:
    """A text body part (no MIME-Version: only the top-level entity has it, RFC 2045 §4)."""
    return (_TEXT_HEADERS[subtype] + _CRLF + _quoted_printable(text)).encode("ascii")


def _attachment(att: Attachment) -> bytes:
    maintype, _, subtype = att.content_type.partition("/")
    if not maintype or not subtype or maintype == "multipart":
        maintype, subtype = "application", "octet-stream"
    part = MIMEBase(maintype, subtype)
    part.set_payload(att.payload)
    encoders.encode_base64(part)
    del part["MIME-Version"]
    # RFC 2231 parameter encoding for non-ASCII file names.
    name = clean_header(att.filename) or "attachment"
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
    return part.as_bytes(policy=_WIRE)


def compose(
    h: Headers, text: str, html: str | None = None, attachments: Sequence[Attachment] = ()
) -> bytes:
    """The message as CRLF bytes: multipart/alternative (text, HTML), mixed if attachments."""
    if html is None and not attachments:
        content = [
            ("Content-Type", 'text/plain; charset="utf-8"'),
            ("MIME-Version", "1.0"),
            ("Content-Transfer-Encoding", "quoted-printable"),
        ]
        body = _quoted_printable(text).encode("ascii")
    else:
        if html is None:
            ctype, body = "", _text_part(text, "plain")
        else:
            parts = [_text_part(text, "plain"), _text_part(html, "html")]
            ctype, body = _multipart("alternative", parts)
        if attachments:
            inner = body if not ctype else (_header("Content-Type", ctype) + _CRLF).encode() + body
            parts = [inner, *(_attachment(a) for a in attachments)]
            ctype, body = _multipart("mixed", parts)
        content = [("Content-Type", ctype), ("MIME-Version", "1.0")]
    mailboxes = _Mailboxes()
    head = "".join(_header(n, v) for n, v in [*content, *_header_items(h, mailboxes)])
    return mailboxes.restore(head.encode("ascii", "surrogateescape") + b"\r\n" + body)


def _header_items(h: Headers, mailbox: _Mailboxes) -> list[tuple[str, str | Header]]:
    items: list[tuple[str, str | Header]] = [
        ("From", mailbox(h.from_)),
        ("To", ", ".join(mailbox(a) for a in h.to)),
    ]
    if h.cc:
        items.append(("Cc", ", ".join(mailbox(a) for a in h.cc)))
    if h.reply_to is not None:
        items.append(("Reply-To", mailbox(h.reply_to)))
    items.append(("Subject", _text(h.subject)))
    items.append(("Date", format_datetime(h.date)))
    items.append(("Message-ID", clean_header(h.message_id)))
    if h.in_reply_to:
        items.append(("In-Reply-To", clean_header(h.in_reply_to)))
    if h.references:
        items.append(("References", " ".join(clean_header(r) for r in h.references)))
    items.append(("Auto-Submitted", clean_header(h.auto_submitted)))
    for name, value in h.extra:
        items.append((clean_header(name), _text(value)))
    return items
