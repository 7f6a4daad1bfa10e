"""strip_quoted keeps what the author wrote and drops the history their client quoted."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtix.core.quotes import REPLY_MARKER, strip_quoted

CASES = [
    pytest.param(
        "Hello Bob,\n\n    indented(code)\nThanks\n\n"
        "On Mon, 1 Jan 2024 at 10:00, Bob <bob@x.com> wrote:\n> quoted\n> more\n",
        "Hello Bob,\n\n    indented(code)\nThanks",
        id="gmail-top-post-keeps-indentation",
    ),
    pytest.param(
        "Bonjour,\nvoici.\n\nLe lun. 1 janv. 2024 à 10:00, Bob <bob@x.com> a écrit :\n> cité\n",
        "Bonjour,\nvoici.",
        id="french-header",
    ),
    pytest.param(
        "Antwort\n\nAm Mo., 1. Jan. 2024 um 10:00 Uhr schrieb Bob <b@x.de>:\n> q\n",
        "Antwort",
        id="german-header",
    ),
    pytest.param(
        "Reply here\n\nFrom: Support <support@example.com>\nSent: Monday\nTo: x\n"
        "Subject: y\n\nold text",
        "Reply here",
        id="outlook-header",
    ),
    pytest.param(
        "Reply\n\n-----Original Message-----\nFrom: x\nSent: y\n\nold",
        "Reply",
        id="original-message-separator",
    ),
    pytest.param(
        "Answer only\n> quoted line\n> more\n", "Answer only", id="trailing-quote-no-header"
    ),
    pytest.param(
        "On 04/02/2012 06:26 PM, Megan wrote:\n> Hi\nHello", "Hello", id="bottom-post"
    ),
    pytest.param(
        "Hi,\nOn Tue, Ann wrote:\n> Which port?\n\nPort 25.\n",
        "Hi,\n> Which port?\n\nPort 25.",
        id="inline-answer-keeps-its-question",
    ),
    pytest.param(
        f"Unplug it.\n\nOn Mon, Support wrote:\n> {REPLY_MARKER}\n> New ticket [Ticket #4]\n",
        "Unplug it.",
        id="our-marker-quoted",
    ),
    pytest.param(
        f"Top-posted without any header\n{REPLY_MARKER}\nNew ticket [Ticket #4]\n",
        "Top-posted without any header",
        id="our-marker-unquoted",
    ),
    pytest.param(
        'Hello\n02.04.2012 14:20 пользователь "bob@x.org" <\nbob@x.org> написал:\n\n> Hi\n>',
        "Hello",
        id="unknown-language-wrapped-attribution",
    ),
    pytest.param("#status pending\nThanks\r\n\r\n> q\r\n", "#status pending\nThanks", id="crlf"),
    pytest.param("> all quote\n> nothing else\n", "", id="all-quote"),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_strip_quoted(text: str, expected: str) -> None:
    """The reply as the author typed it, commands on top included."""
    assert strip_quoted(text) == expected


def test_a_pathological_body_is_fast() -> None:
    """A long body of separators and headers is handled well within a second."""
    text = ("On Mon, a wrote:\n> x\n" + "-" * 80 + "\n") * 200 + "From: a\nSent: b\n" * 200
    started = time.perf_counter()
    strip_quoted(text)
    assert time.perf_counter() - started < 1.0


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_output_lines_come_from_the_input(text: str) -> None:
    """Nothing is invented: every line of the result is a line of the input."""
    source = {line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")}
    assert all(line in source for line in strip_quoted(text).split("\n") if line)
