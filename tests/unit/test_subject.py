"""Subject tags, reply prefixes and outgoing subjects (SPEC §3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtix.core.subject import (
    find_tag,
    format_tag,
    strip_reply_prefixes,
    tagged_subject,
    ticket_subject,
)


def test_format_tag_uses_prefix_and_id() -> None:
    """The tag is "[<prefix> #<id>]"."""
    assert format_tag("Ticket", 42) == "[Ticket #42]"
    assert format_tag("HELP", 7) == "[HELP #7]"


@pytest.mark.parametrize(
    "subject",
    [
        "[Ticket #42] Printer on fire",
        "Re: [ticket #42] Printer on fire",
        "AW: [Ticket#42] Drucker",
        "[TICKET  # 42]",
        "Fwd: something [ Ticket #42 ] trailing",
        "Re: Re: [Ticket #42] [Ticket #7] two tags, first wins",
    ],
)
def test_find_tag_tolerates_case_and_spacing(subject: str) -> None:
    """Our tag is found anywhere, in any case and spacing."""
    assert find_tag(subject, "Ticket") == 42


@pytest.mark.parametrize(
    "subject",
    [
        "[Cookbook - Feature #2] Add recipes",
        "[Tickets #42] plural is another prefix",
        "Ticket #42 without brackets",
        "[Ticket #] no number",
        "[Ticket #4x2]",
        "Printer on fire",
    ],
)
def test_find_tag_ignores_other_prefixes_and_near_misses(subject: str) -> None:
    """Only our own prefix in a well-formed tag counts."""
    assert find_tag(subject, "Ticket") is None


def test_find_tag_does_not_match_prefix_inside_another_tag() -> None:
    """A prefix that appears mid-bracket ("[Cookbook - Feature #2]") is not our tag."""
    assert find_tag("[Cookbook - Feature #2] Add recipes", "Feature") is None


def test_find_tag_escapes_regex_characters_in_prefix() -> None:
    """A prefix is literal text, not a pattern."""
    assert find_tag("[A-B #5] x", "A-B") == 5
    assert find_tag("[AxB #5] x", "A.B") is None


def test_find_tag_ignores_absurdly_long_ids() -> None:
    """A 40-digit "id" is not one of ours."""
    assert find_tag("[Ticket #" + "9" * 40 + "]", "Ticket") is None


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Hello", "Hello"),
        ("RE: RE: Hello", "Hello"),
        ("AW:Hello", "Hello"),
        ("AW: WG: SV: VS: TR: RV: Hello", "Hello"),
        ("Fwd: Fw: FW: Hello", "Hello"),
        ("Antw: Antwort: Hello", "Hello"),
        ("Réf. : Ref: Rif: R: Hello", "Hello"),
        ("Odp: Vá: VÁ: Hello", "Hello"),
        ("Re[2]: Re(3): Hello", "Hello"),
        ("re : Hello", "Hello"),
        ("回复\uff1aHello", "Hello"),
        ("Hello", "Hello"),
        ("Regarding: Hello", "Regarding: Hello"),
        ("Reply needed", "Reply needed"),
        ("Hello Re: world", "Hello Re: world"),
    ],
)
def test_strip_reply_prefixes_removes_whole_chain_only_at_start(
    subject: str, expected: str
) -> None:
    """Every reply/forward marker at the start goes; words that merely start alike stay."""
    assert strip_reply_prefixes(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: [Ticket #42] Printer on fire", "Printer on fire"),
        ("Re: [Ticket #42] AW: Drucker   brennt", "Drucker brennt"),
        ("[ticket #42]", "(no subject)"),
        ("", "(no subject)"),
        ("   Re:  ", "(no subject)"),
        ("Printer\r\nBcc: victim@example.com", "Printer Bcc: victim@example.com"),
        ("[Cookbook - Feature #2] Add", "[Cookbook - Feature #2] Add"),
    ],
)
def test_ticket_subject_is_the_human_part(subject: str, expected: str) -> None:
    """Stored subjects lose prefixes and our tag, keep everything else on one line."""
    assert ticket_subject(subject, "Ticket") == expected


def test_tagged_subject_has_one_re_and_one_tag() -> None:
    """Outgoing subjects never double the tag or the "Re:"."""
    assert (
        tagged_subject("Ticket", 42, "Re: RE: [Ticket #42] Printer on fire")
        == "Re: [Ticket #42] Printer on fire"
    )
    first = tagged_subject("Ticket", 42, "Printer on fire", reply=False)
    assert first == "[Ticket #42] Printer on fire"


def test_tagged_subject_replaces_a_foreign_id_of_our_prefix() -> None:
    """After a merge, the old ticket's tag is replaced by the new one, not kept beside it."""
    assert tagged_subject("Ticket", 17, "Re: [Ticket #42] Printer") == "Re: [Ticket #17] Printer"


@given(st.text())
def test_tagged_subject_is_always_one_safe_line(subject: str) -> None:
    """Whatever a customer writes, our outgoing subject has no line breaks or control chars."""
    out = tagged_subject("Ticket", 42, subject)
    assert out.splitlines() == [out]
    assert not any(ord(c) < 32 or c == "\x7f" for c in out)
    assert out.startswith("Re: [Ticket #42] ")
    assert find_tag(out, "Ticket") == 42


@given(st.text(), st.integers(min_value=1, max_value=10**12))
def test_ticket_subject_of_tagged_subject_is_stable(subject: str, ticket_id: int) -> None:
    """Tagging then storing gives the same human subject as storing directly."""
    once = ticket_subject(subject, "Ticket")
    assert ticket_subject(tagged_subject("Ticket", ticket_id, subject), "Ticket") == once
