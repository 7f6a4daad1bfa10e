"""Parsing raw mail into ParsedMessage, and HTML to text."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtix.core.htmltext import html_to_text
from mailtix.core.message import ParsedMessage
from mailtix.core.parse import decode_bytes, decode_header_value, parse
from mailtix.errors import NotMail
from tests.conftest import CORPUS, need

PLAIN = (
    b"From: =?utf-8?q?Carol_M=C3=BCller?= <Carol@Customer.COM>\r\n"
    b"To: Support <support@example.com>, bob@Example.com\r\n"
    b"Cc: dave@customer.com\r\n"
    b"Reply-To: carol.private@customer.com\r\n"
    b"Subject: =?iso-8859-1?q?Drucker_br=E4nnt?= (AW: printer)\r\n"
    b"Date: Mon, 7 May 2012 08:10:00 +0200\r\n"
    b"Message-ID: <abc@customer.com>\r\n"
    b"In-Reply-To: <prev@example.com>\r\n"
    b"References: <first@example.com>\r\n <prev@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello, the printer is on fire.\r\n"
    b"-- \r\n"
    b"Carol\r\n"
)


def mime(*parts: bytes, ctype: str = "multipart/mixed", head: bytes = b"") -> bytes:
    """A multipart message from ready-made parts (each: headers, blank line, body)."""
    body = b"".join(b"--XX\r\n" + p + b"\r\n" for p in parts) + b"--XX--\r\n"
    return (
        b"From: carol@customer.com\r\nSubject: parts\r\nMessage-ID: <m@x>\r\n"
        b"Date: Mon, 7 May 2012 08:10:00 +0000\r\n"
        + head
        + f"Content-Type: {ctype}; boundary=XX\r\n\r\n".encode()
        + body
    )


def attachment(name: str | None, data: bytes, ctype: str = "application/pdf") -> bytes:
    disp = f'attachment; filename="{name}"' if name else "attachment"
    return (
        f"Content-Type: {ctype}\r\nContent-Disposition: {disp}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + base64.encodebytes(data)


TEXT_PART = b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"


# ------------------------------------------------------------------ headers
def test_plain_message_fills_every_field() -> None:
    """Headers decoded, addresses lower-cased, ids in angle brackets, date aware."""
    m = parse(PLAIN)
    assert m.message_id == "<abc@customer.com>"
    assert m.subject == "Drucker brännt (AW: printer)"
    assert (m.from_addr, m.from_name) == ("carol@customer.com", "Carol Müller")
    assert m.to == ("support@example.com", "bob@example.com")
    assert m.cc == ("dave@customer.com",)
    assert m.reply_to == ("carol.private@customer.com",)
    assert m.in_reply_to == ("<prev@example.com>",)
    assert m.references == ("<first@example.com>", "<prev@example.com>")
    assert m.date == datetime(2012, 5, 7, 6, 10, tzinfo=UTC)
    assert m.text == "Hello, the printer is on fire.\n-- \nCarol"
    assert m.html is None
    assert m.content_type == "text/plain"
    assert m.header("SUBJECT") == "Drucker brännt (AW: printer)"
    assert m.defects == ()


def test_parsed_message_threads_newest_reference_first() -> None:
    """thread_ids puts In-Reply-To first, then References newest first."""
    assert parse(PLAIN).thread_ids == ("<prev@example.com>", "<first@example.com>")


def test_date_without_zone_is_utc_and_noted() -> None:
    """A Date with no zone is read as UTC (and said so)."""
    m = parse(PLAIN.replace(b"Mon, 7 May 2012 08:10:00 +0200", b"Mon, 7 May 2012 08:10:00"))
    assert m.date == datetime(2012, 5, 7, 8, 10, tzinfo=UTC)
    assert "Date has no time zone; UTC assumed" in m.defects


def test_date_keeps_the_instant_of_its_offset() -> None:
    """Any offset gives the same instant as an aware datetime."""
    m = parse(PLAIN.replace(b"+0200", b"-0530"))
    assert m.date == datetime(2012, 5, 7, 8, 10, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))


def test_unreadable_date_is_none_with_a_defect() -> None:
    """A Date that names no time gives None, not an exception."""
    m = parse(PLAIN.replace(b"Mon, 7 May 2012 08:10:00 +0200", b"<HR>"))
    assert m.date is None
    assert any(d.startswith("unreadable Date") for d in m.defects)


def test_missing_from_message_id_and_date_are_defects() -> None:
    """A bare message still parses; what is missing is listed."""
    m = parse(b"Subject: hi\r\n\r\nbody\r\n")
    assert (m.from_addr, m.message_id, m.date, m.text) == ("", None, None, "body")
    assert {"no Message-ID", "no Date", "no usable From address"} <= set(m.defects)


def test_encoded_word_cannot_inject_a_header_line() -> None:
    """CR/LF inside an RFC 2047 word become spaces in every decoded header."""
    m = parse(PLAIN.replace(b"Subject: =?iso", b"Subject: =?utf-8?q?a=0D=0ABcc:_x@evil?= =?iso"))
    assert "\n" not in m.subject and "\r" not in m.subject
    assert m.subject.startswith("a  Bcc: x@evil")


def test_raw_utf8_header_is_decoded() -> None:
    """Unencoded UTF-8 in a header (RFC 6532) reads as text."""
    m = parse(
        PLAIN.replace(b"Subject: =?iso-8859-1?q?Drucker_br=E4nnt?=", "Subject: Grüße".encode())
    )
    assert m.subject == "Grüße (AW: printer)"


def test_split_multibyte_encoded_words_are_joined() -> None:
    """A character split across two encoded words (RFC 2047 §5 violation) still decodes."""
    assert decode_header_value("=?utf-8?b?w6Q=?= =?utf-8?b?w7Y=?=") == "äö"
    raw = "ä".encode()
    split = f"=?utf-8?q?={raw[0]:02X}?= =?utf-8?q?={raw[1]:02X}?="
    assert decode_header_value(split) == "ä"


def test_obsolete_space_before_colon_keeps_headers() -> None:
    """ "From  : x" (RFC 5322 §4.5) is read, not taken for the start of the body."""
    m = parse(b"From  : John <jdoe@example.com>\r\nSubject     : Hello\r\n\r\nbody\r\n")
    assert (m.from_addr, m.subject, m.text) == ("jdoe@example.com", "Hello", "body")


def test_malformed_from_is_recovered_leniently() -> None:
    """An unclosed angle address still yields the sender, with a defect."""
    m = parse(b"From: Foo Bar <foo@bar.example\r\nSubject: x\r\n\r\nbody\r\n")
    assert m.from_addr == "foo@bar.example"
    assert "From: recovered from a malformed address" in m.defects


def test_references_without_brackets_and_duplicates() -> None:
    """Bare ids get brackets; repeated ids are listed once."""
    m = parse(b"From: a@b.c\r\nReferences: x@y <z@w> <z@w>\r\nIn-Reply-To: q@r\r\n\r\nb")
    assert m.references == ("<z@w>",)
    assert m.in_reply_to == ("<q@r>",)


# --------------------------------------------------------------------- body
def test_html_only_mail_is_converted_and_kept() -> None:
    """With no text part, the HTML is converted; the HTML itself is kept as received."""
    html = b"<html><body><p>Hello <b>there</b></p><ul><li>one</li><li>two</li></ul></body></html>"
    m = parse(b"From: a@b.c\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html)
    assert m.text.splitlines()[0] == "Hello there"
    assert "* one" in m.text and "* two" in m.text
    assert m.html == html.decode()


def test_alternative_prefers_the_text_part() -> None:
    """multipart/alternative: the text/plain part is the body."""
    m = parse(
        mime(
            b"Content-Type: text/plain\r\n\r\nplain words\r\n",
            b"Content-Type: text/html\r\n\r\n<p>html words</p>\r\n",
            ctype="multipart/alternative",
        )
    )
    assert m.text == "plain words"
    assert m.html is not None and "html words" in m.html


def test_empty_text_part_next_to_html_uses_the_html() -> None:
    """An empty text/plain alternative (corpus html/redmine-empty_text_part.eml) is skipped."""
    m = parse(
        mime(
            b"Content-Type: text/plain\r\n\r\n\r\n",
            b"Content-Type: text/html\r\n\r\n<p>only here</p>\r\n",
            ctype="multipart/alternative",
        )
    )
    assert m.text == "only here"


def test_unknown_charset_falls_back_and_is_noted() -> None:
    """A charset Python does not know decodes as UTF-8 with a defect."""
    m = parse(
        b"From: a@b.c\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\n" + "Grüße".encode()
    )
    assert m.text == "Grüße"
    assert "unknown charset 'x-klingon'; decoded as utf-8" in m.defects


def test_wrong_charset_falls_back_and_is_noted() -> None:
    """Bytes that are not valid in the declared charset never raise."""
    m = parse(
        b"From: a@b.c\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + "Grüße".encode("latin-1")
    )
    assert m.text.startswith("Gr")
    assert any(d.startswith("text is not valid us-ascii") for d in m.defects)


@pytest.mark.parametrize(
    "charset", [None, "utf-8", "us-ascii", "x-unknown", "iso-2022-jp", "utf-7"]
)
@given(data=st.binary(max_size=200))
def test_decode_bytes_never_raises(charset: str | None, data: bytes) -> None:
    """Any bytes in any declared charset decode to storable text."""
    text, _ = decode_bytes(data, charset)
    assert isinstance(text, str)


def test_iso_8859_1_label_reads_windows_1252() -> None:
    """The common mislabel: 0x80 is the euro sign, as browsers read it (WHATWG)."""
    assert decode_bytes(b"\x80 5", "iso-8859-1") == ("€ 5", None)


def test_nul_bytes_long_lines_and_cr_only_are_defects_not_errors() -> None:
    """Malformed framing gives a ParsedMessage whose defects say what was wrong."""
    raw = b"From: a@b.c\rSubject: s\r\rline\x00one " + b"x" * 1200 + b"\r"
    m = parse(raw)
    assert m.subject == "s"
    assert "\x00" not in m.text
    assert {"NUL bytes in the message", "CR-only line endings"} <= set(m.defects)
    assert "line longer than 998 octets (RFC 5322 §2.1.1)" in m.defects


def test_broken_boundary_keeps_the_body_as_text() -> None:
    """A multipart whose boundary never appears still yields its text."""
    m = parse(b"From: a@b.c\r\nContent-Type: multipart/mixed; boundary=nope\r\n\r\nhello\r\n")
    assert "hello" in m.text
    assert any("boundary" in d for d in m.defects)


def test_deep_nesting_does_not_crash() -> None:
    """A crafted 3000-level multipart is mail with a defect, not a RecursionError."""
    levels = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(3000)
    )
    m = parse(b"From: a@b.c\r\n" + levels + b"Content-Type: text/plain\r\n\r\nhi\r\n")
    assert m.from_addr == "a@b.c"
    assert m.defects


# -------------------------------------------------------------- attachments
def test_attachments_are_decoded_with_safe_names() -> None:
    """Payloads are decoded bytes; names lose their paths; unnamed ones get defaults."""
    m = parse(
        mime(
            TEXT_PART,
            attachment("../../report.pdf", b"%PDF-1.4 data"),
            attachment(None, b"\x89PNG...", "image/png"),
        )
    )
    assert m.text == "See attached."
    assert [(a.filename, a.content_type, a.payload) for a in m.attachments] == [
        ("report.pdf", "application/pdf", b"%PDF-1.4 data"),
        ("attachment-2.png", "image/png", b"\x89PNG..."),
    ]


def test_rfc2231_and_encoded_word_filenames_are_decoded() -> None:
    """filename*=utf-8''… (RFC 2231) and Outlook's =?utf-8?…?= names both decode."""
    m = parse(
        mime(
            b"Content-Type: application/pdf\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf\r\n\r\nx",
            b"Content-Type: application/pdf\r\n"
            b'Content-Disposition: attachment; filename="=?utf-8?q?Gr=C3=BC=C3=9Fe.pdf?="\r\n\r\ny',
        )
    )
    assert [a.filename for a in m.attachments] == ["Rechnung März.pdf", "Grüße.pdf"]


def test_duplicate_names_are_made_unique() -> None:
    """Two attachments called image.png are stored as image.png and image (2).png."""
    m = parse(mime(attachment("image.png", b"1"), attachment("image.png", b"2")))
    assert [a.filename for a in m.attachments] == ["image.png", "image (2).png"]


def test_attached_message_is_kept_as_eml_and_not_in_the_body() -> None:
    """message/rfc822 becomes a .eml attachment named after its subject."""
    inner = b"From: x@y.z\r\nSubject: Original order\r\n\r\nsecret inner text\r\n"
    m = parse(mime(TEXT_PART, b"Content-Type: message/rfc822\r\n\r\n" + inner))
    assert m.text == "See attached."
    (att,) = m.attachments
    assert (att.filename, att.content_type) == ("Original order.eml", "message/rfc822")
    assert b"secret inner text" in att.payload
    assert parse(att.payload).subject == "Original order"


def test_too_many_attachments_are_dropped_with_a_defect() -> None:
    """Past max_attachments, extras are not kept and each is named in a defect."""
    m = parse(
        mime(attachment("a.pdf", b"1"), attachment("b.pdf", b"2"), attachment("c.pdf", b"3")),
        max_attachments=2,
    )
    assert [a.filename for a in m.attachments] == ["a.pdf", "b.pdf"]
    assert "attachment c.pdf not kept: more than 2 attachments" in m.defects


def test_oversized_attachment_is_dropped_with_its_size() -> None:
    """An attachment over max_attachment_bytes is dropped; the defect gives both sizes."""
    big = b"\0" * (3 * 1024 * 1024)
    m = parse(
        mime(TEXT_PART, attachment("report.pdf", big), attachment("small.pdf", b"ok")),
        max_attachment_bytes=2 * 1024 * 1024,
    )
    assert [a.filename for a in m.attachments] == ["small.pdf"]
    assert "attachment report.pdf (3.0 MB) over the 2.0 MB limit, not kept" in m.defects


def test_named_text_part_is_an_attachment_not_body() -> None:
    """A text/plain part with a file name is a file, not part of the message text."""
    m = parse(mime(TEXT_PART, attachment("notes.txt", b"file content", "text/plain")))
    assert m.text == "See attached."
    assert [a.filename for a in m.attachments] == ["notes.txt"]


# ------------------------------------------------------------------ NotMail
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"  \r\n\r\n ",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100,
        b"%PDF-1.7\n...",
        b"// Not an RFC-822 Document",
        b"Lorem ipsum dolor sit amet,\nconsectetur adipisicing elit.\n",
    ],
    ids=["empty", "blank", "ole-msg", "pdf", "no-header", "prose"],
)
def test_input_that_is_not_mail_raises_not_mail(raw: bytes) -> None:
    """Empty input, binary files and text without header fields are not mail."""
    with pytest.raises(NotMail):
        parse(raw)


def test_leading_blank_lines_and_bom_are_tolerated() -> None:
    """A BOM or blank lines before the header do not make mail "not mail"."""
    m = parse(b"\xef\xbb\xbf\r\n\r\nFrom: a@b.c\r\nSubject: s\r\n\r\nbody")
    assert (m.from_addr, m.subject) == ("a@b.c", "s")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    b"From: ",
                    b"Subject: ",
                    b"Content-Type: multipart/mixed; boundary=b\r\n",
                    b"--b\r\n",
                    b"--b--\r\n",
                    b"\r\n",
                    b"\n",
                    b"\r",
                    b"=?utf-8?b?",
                    b"?=",
                    b"Content-Type: message/rfc822\r\n",
                    b"Content-Transfer-Encoding: base64\r\n",
                    b"Content-Disposition: attachment; filename*=utf-8''%e2%82\r\n",
                    b"\x00",
                    b"\xff\xfe",
                    b"<a@b>",
                    b"Date: ",
                    b"text/html",
                ]
            )
            | st.binary(max_size=16),
            max_size=30,
        ).map(b"".join),
    )
)
def test_parse_returns_a_message_or_raises_not_mail(raw: bytes) -> None:
    """On any bytes at all, parse() gives a storable ParsedMessage or raises NotMail."""
    try:
        m = parse(raw, max_attachments=2, max_attachment_bytes=64)
    except NotMail:
        return
    assert isinstance(m, ParsedMessage)
    for text in (m.subject, m.text, m.from_addr, m.from_name, *m.to, *m.defects):
        text.encode("utf-8")  # no lone surrogates
        assert "\x00" not in text
    for values in m.headers.values():
        assert all("\n" not in v and "\r" not in v for v in values)


# ------------------------------------------------------------------- corpus
NOT_MAIL_IN_CORPUS = {
    "malformed/mailparser-mail_outlook_1.eml",  # an Outlook .msg (OLE2) file
    "malformed/enmime-mail-erroneous.eml",  # "// Not an RFC-822 Document"
    "malformed/rt-lorem-ipsum.eml",  # prose with no header field
}


def test_every_corpus_message_parses() -> None:
    """All 759 corpus .eml files parse; NotMail only for the three that are not mail."""
    need(CORPUS.exists(), "corpus missing")
    refused = set()
    for path in sorted(CORPUS.rglob("*.eml")):
        try:
            parse(path.read_bytes(), max_attachment_bytes=25 * 1024 * 1024, max_attachments=50)
        except NotMail:
            refused.add(path.relative_to(CORPUS).as_posix())
    assert refused == NOT_MAIL_IN_CORPUS


def _corpus(rel: str) -> ParsedMessage:
    need(CORPUS.exists(), "corpus missing")
    return parse((CORPUS / rel).read_bytes())


@pytest.mark.parametrize(
    ("rel", "subject"),
    [
        ("charsets/zammad-mail027.eml", "蠭龕中層管理者如何避免角色行为誤区"),
        (
            "charsets/phpmimemailparser-m0021.eml",
            "occurs when divided into an array, and the last e of the array! Путін хуйло!!!!!!",
        ),
        ("html/djangohelpdesk-quoted_printable.eml", "Český test"),
        ("threading/zammad-mail007.eml", "AW:Installation [Ticket#11392]"),
        ("threading/phpmimemailparser-m0022.eml", "[PRJ-OTH] asdf  árvíztűrő tükörfúrógép"),
        ("charsets/phpmimemailparser-issue149.eml", "מענה 'אני לא נמצא': Invoice 02722027"),
    ],
)
def test_corpus_subjects_decode(rel: str, subject: str) -> None:
    """Subjects in many charsets and encodings decode as their sources expect."""
    assert _corpus(rel).subject == subject


def test_corpus_sender_with_comma_in_quoted_name() -> None:
    """ "Müller, Bernd" <…> is one sender, name and address intact (zammad-mail014)."""
    m = _corpus("threading/zammad-mail014.eml")
    assert (m.from_name, m.from_addr) == ("Müller, Bernd", "bernd.mueller@example.com")
    assert m.text.splitlines()[0] == "äöüß ad asd"


def test_corpus_attachment_name_and_html_only_body() -> None:
    """zammad-mail024's CSV keeps its name; redmine's Outlook HTML-only mail has text."""
    assert [a.filename for a in _corpus("attachments/zammad-mail024.eml").attachments] == [
        "rulesets-report.csv"
    ]
    text = _corpus("html/redmine-outlook_2010_html_only.eml").text
    assert text.startswith("Simple, unadorned test email generated by Outlook 2010.")


def test_corpus_mislabelled_charset_bodies() -> None:
    """Bodies in a charset other than the declared one still read right (discourse fixtures)."""
    assert "您好\uff01 你今天好吗\uff1f" in _corpus("charsets/discourse-chinese_reply.eml").text
    assert "שלום! מה שלומך היום?" in _corpus("charsets/discourse-hebrew_reply.eml").text


# ---------------------------------------------------------------- htmltext
def test_html_to_text_lays_out_tables_and_drops_scripts() -> None:
    """Table cells stay on one line; script and style content never shows."""
    html = (
        "<style>p{color:red}</style><script>alert(1)</script>"
        "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>Toner</td><td>2</td></tr></table>"
    )
    text = html_to_text(html)
    assert "alert" not in text and "color" not in text
    assert [line.split() for line in text.splitlines() if line.strip()] == [
        ["Name", "Qty"],
        ["Toner", "2"],
    ]


def test_html_to_text_keeps_link_targets() -> None:
    """An agent needs the address a customer linked to."""
    assert html_to_text('<a href="https://example.com/x">the page</a>') == (
        "[the page](https://example.com/x)"
    )


def test_html_to_text_survives_nesting_lxml_refuses() -> None:
    """Past libxml2's depth limit, the stdlib fallback still finds the words."""
    assert html_to_text("<b>" * 400 + "deep words") == "deep words"


@pytest.mark.parametrize("html", ["", "   ", "<p></p>", "<script>x()</script>"])
def test_html_to_text_of_empty_documents_is_empty(html: str) -> None:
    """Markup with nothing visible gives ""."""
    assert html_to_text(html) == ""


def test_corpus_path_is_outside_the_repository() -> None:
    """The corpus is read in place, never copied into the repository."""
    assert not CORPUS.resolve().is_relative_to(Path(__file__).resolve().parents[2])


# ------------------------------------------------------- address fast path
_atom = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}", fullmatch=True)
_simple_address = st.builds(
    lambda local, host, tld: f"{local}@{host}.{tld}",
    st.lists(_atom, min_size=1, max_size=3).map(".".join),
    st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    st.sampled_from(["com", "org", "de"]),
)
_simple_mailbox = st.one_of(
    _simple_address,
    st.builds(
        lambda name, addr: f"{name} <{addr}>",
        st.from_regex(r"[A-Za-z0-9' _-]{0,20}", fullmatch=True),
        _simple_address,
    ),
)


@given(st.lists(_simple_mailbox, min_size=1, max_size=4).map(", ".join))
def test_address_fast_path_agrees_with_mail_parser(value: str) -> None:
    """Plain address lists read the same by the fast path as by mail-parser's full parser."""
    from mailparser.utils import get_addresses

    from mailtix.core.parse import _simple_addresses

    fast = _simple_addresses(value)
    assert fast is not None
    full = [(n, a) for n, a in get_addresses(value, decode_names=True) if a]
    assert fast == [(" ".join(n.split()), a) for n, a in full]
