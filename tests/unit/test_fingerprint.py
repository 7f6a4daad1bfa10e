"""The dedupe key: the same message by any route is one key; a different one is another."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailtix.core.fingerprint import dedupe_key, message_id_of

BASE = (
    b"From: a@x.org\r\nTo: support@example.com\r\nSubject: hi\r\n"
    b"Message-ID: <m1@x.org>\r\n\r\nHello\r\n"
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
)


@given(st.lists(header_text, max_size=4))
def test_trace_headers_do_not_change_the_key(hops: list[str]) -> None:
    """Received/Delivered-To lines added in transit leave the key as it was."""
    trace = b"".join(
        b"Received: from " + h.encode() + b"\r\nDelivered-To: " + h.encode() + b"\r\n" for h in hops
    )
    assert dedupe_key(trace + BASE) == dedupe_key(BASE)


def test_line_endings_do_not_change_the_key() -> None:
    """A copy stored with LF line endings (mbox, Maildir) is the same message."""
    assert dedupe_key(BASE.replace(b"\r\n", b"\n"))[0] == dedupe_key(BASE)[0]


@given(st.binary(min_size=1, max_size=50).filter(lambda b: b.strip(b"\r\n")))
def test_other_content_is_another_message(extra: bytes) -> None:
    """Same Message-ID, different body: another key (trailing blank lines aside)."""
    assert dedupe_key(BASE + extra)[0] != dedupe_key(BASE)[0]


@given(st.binary(max_size=300))
def test_any_bytes_give_a_key(raw: bytes) -> None:
    """The accept path never raises on what a client sends."""
    key, _ = dedupe_key(raw)
    assert len(key) == 64


def test_message_id_is_normalised_with_brackets() -> None:
    """Message-ID with folding or without angle brackets is read as <id>."""
    assert message_id_of(b"Message-Id:\r\n <abc@x.org>") == "<abc@x.org>"
    assert message_id_of(b"Message-ID: abc@x.org") == "<abc@x.org>"
    assert message_id_of(b"Subject: none") is None
