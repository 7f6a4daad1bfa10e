"""Every template renders in both languages into mail the email package reads back cleanly."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import UndefinedError

from mailtix.render.mime import (
    Address,
    Attachment,
    Headers,
    clean_header,
    compose,
    new_message_id,
)
from mailtix.render.templates import BUILTIN_DIR, KINDS, LANGUAGES, Templates

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EVIL = '<script>alert("x")</script> & <b>bold</b>'

CONTEXT: dict[str, Any] = {
    "ticket": {"id": 42, "tag": "[Ticket #42]", "subject": "Printer <on> fire", "status": "open",
               "priority": "normal", "queue": "support"},
    "brand": "Example Support",
    "recipient_name": "Émile",
    "reply_address": "support+42-abcdefgh@example.com",
    "agent_name": "Alice",
    "body": EVIL + "\nsecond line",
    "author_name": "Carla",
    "author_email": "carla@customer.org",
    "attachments": ["report.pdf"],
    "automated": False,
    "marker": "-- reply above this line --",
    "failed_kind": "answer",
    "failed_message_id": "<m@example.com>",
    "failed_to": ["carla@customer.org"],
    "error": "550 5.1.1 <carla@customer.org>: no such user",
}


def _headers(subject: str = "Re: [Ticket #42] Printer <on> fire", **kw: Any) -> Headers:
    return Headers(
        from_=Address("support@example.com", "Example Support"),
        to=(Address("carla@customer.org", "Carla Ünicode"),),
        cc=(Address("dan@customer.org"),),
        subject=subject,
        message_id="<mailtix.42.abc@example.com>",
        date=NOW,
        reply_to=Address("support+42-abcdefgh@example.com"),
        in_reply_to="<c1@customer.org>",
        references=("<c1@customer.org>", "<mailtix.42.ack@example.com>"),
        extra=(("X-Mailtix-Loop", "support@example.com"),),
        **kw,
    )


def _read(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _part(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body((subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}"
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_template_renders_and_parses_back(kind: str, language: str) -> None:
    """Text and HTML parts, all headers, customer text escaped in HTML only."""
    rendered = Templates().render(kind, language, CONTEXT)
    raw = compose(_headers(rendered.subject or "Re: [Ticket #42] Printer <on> fire"),
                  rendered.text, rendered.html)
    assert b"\r\n" in raw and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = _read(raw)
    assert msg.get_content_type() == "multipart/alternative" and not msg.defects
    assert msg["Message-ID"] == "<mailtix.42.abc@example.com>"
    assert msg["In-Reply-To"] == "<c1@customer.org>"
    assert msg["References"].split() == ["<c1@customer.org>", "<mailtix.42.ack@example.com>"]
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Mailtix-Loop"]
    assert msg["Reply-To"].addresses[0].addr_spec == "support+42-abcdefgh@example.com"
    assert msg["To"].addresses[0].display_name == "Carla Ünicode"
    assert "[Ticket #42]" in msg["Subject"]
    text, html = _part(msg, "plain"), _part(msg, "html")
    assert "[Ticket #42]" in text and "[Ticket #42]" in html
    assert f'lang="{language}"' in html
    assert "<script>" not in html and "<on>" not in html
    if "{{ body }}" in (BUILTIN_DIR / language / f"{kind}.txt.j2").read_text():
        assert EVIL in text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;" in html


def test_french_and_english_differ() -> None:
    """The language picks the template set; an unknown one falls back to the default."""
    t = Templates(default_language="en")
    assert "Bonjour" in t.render("ack", "fr", CONTEXT).text
    assert "Hello" in t.render("ack", "en", CONTEXT).text
    assert "Hello" in t.render("ack", "de", CONTEXT).text
    assert "Bonjour" in Templates(default_language="fr").render("ack", None, CONTEXT).text


def test_a_missing_variable_is_an_error() -> None:
    """StrictUndefined: a template never silently renders an empty sentence."""
    context = {k: v for k, v in CONTEXT.items() if k != "brand"}
    with pytest.raises(UndefinedError):
        Templates().render("ack", "en", context)


def test_an_override_directory_wins_file_by_file(tmp_path: Path) -> None:
    """A site template replaces the built-in one; the others stay."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "ack.txt.j2").write_text("Custom ack for {{ ticket.tag }}\n")
    rendered = Templates(tmp_path).render("ack", "en", CONTEXT)
    assert rendered.text == "Custom ack for [Ticket #42]\n"
    assert "We have received your message" in rendered.html


CRLF_SUBJECTS = [
    "Printer\r\nBcc: x@evil.example",
    "Printer\nBcc: x@evil.example",
    "Printer\rBcc: x@evil.example",
    "=?utf-8?q?a=0D=0ABcc:_x@evil.example?=",
    "a\u2028Bcc: x@evil.example",
    "Ünïcode\r\n\r\n<html>body</html>",
]


@pytest.mark.parametrize("subject", CRLF_SUBJECTS)
def test_a_newline_in_a_customer_subject_never_makes_a_header(subject: str) -> None:
    """CR, LF, an encoded newline or a Unicode line separator stay inside Subject."""
    raw = compose(_headers(f"Re: [Ticket #42] {subject}"), "text\n", "<p>html</p>")
    msg = _read(raw)
    assert msg["Bcc"] is None and not msg.defects
    assert [k.lower() for k in msg] == [
        "content-type", "mime-version", "from", "to", "cc", "reply-to", "subject", "date",
        "message-id", "in-reply-to", "references", "auto-submitted", "x-mailtix-loop",
    ]
    assert "\r" not in msg["Subject"] and "\n" not in msg["Subject"]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc" not in head and b"\nBcc" not in head


@given(st.text(max_size=200))
def test_any_subject_is_one_header_line(subject: str) -> None:
    """Whatever the text, it comes back as exactly one clean Subject."""
    msg = _read(compose(_headers(subject), "x\n"))
    assert len(msg.get_all("Subject") or []) == 1
    assert str(msg["Subject"]) == clean_header(subject)


def test_attachments_make_a_mixed_message() -> None:
    """Attachments wrap the alternative part in multipart/mixed, names RFC 2231-encoded."""
    raw = compose(_headers(), "text\n", "<p>html</p>",
                  [Attachment("rapport é.pdf", "application/pdf", b"%PDF-1.4 data")])
    msg = _read(raw)
    assert msg.get_content_type() == "multipart/mixed"
    (att,) = list(msg.iter_attachments())
    assert att.get_filename() == "rapport é.pdf" and att.get_content() == b"%PDF-1.4 data"
    assert _part(msg, "plain") == "text\n"


def test_message_ids_are_unique_and_ours() -> None:
    """Fresh per call, on our domain, in angle brackets (RFC 5322 §3.6.4)."""
    ids = {new_message_id("example.com", 42) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("<mailtix.42.") and i.endswith("@example.com>") for i in ids)


def test_an_internationalised_address_is_written_as_utf8() -> None:
    """RFC 6532: a non-ASCII local part stays UTF-8; a non-ASCII domain becomes A-labels."""
    h = Headers(from_=Address("support@example.com"), to=(Address("jörg@exämple.de", "Jörg"),),
                cc=(Address("ana@bücher.de"),), subject="x", message_id="<a@example.com>",
                date=NOW)
    head = compose(h, "x\n").split(b"\r\n\r\n", 1)[0]
    assert b"To: =?utf-8?q?J=C3=B6rg?= <j\xc3\xb6rg@xn--exmple-cua.de>" in head
    assert b"Cc: ana@xn--bcher-kva.de" in head
    assert b"utf8.invalid" not in head
