"""Which ticket a message joins (SPEC §3)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtix.core.linking import LinkInput, TicketFacts, decide

AGENTS = frozenset({"alice@example.com"})
CAROL = "carol@customer.com"


def ticket(
    tid: int, status: str = "open", requester: str = CAROL, cc: tuple[str, ...] = ()
) -> TicketFacts:
    return TicketFacts(tid, status, requester, frozenset({requester, *cc}))


def link(sender: str = CAROL, **kw: object) -> LinkInput:
    base = LinkInput(sender, None, None, None, None, AGENTS)
    return replace(base, **kw)


def test_no_evidence_opens_a_new_ticket() -> None:
    """Without token, reference or tag, a message starts a ticket."""
    d = decide(link())
    assert (d.ticket_id, d.via, d.follows, d.claimed_tag) == (None, "new", None, None)


def test_token_joins_its_ticket() -> None:
    """A valid signed reply address joins its ticket."""
    d = decide(link(by_token=ticket(1)))
    assert (d.ticket_id, d.via) == (1, "reply-address")


def test_token_beats_references_and_tag() -> None:
    """The signed reply address outranks every other evidence."""
    d = decide(link(by_token=ticket(1), by_reference=ticket(2), by_tag=ticket(3), tag_id=3))
    assert (d.ticket_id, d.via) == (1, "reply-address")


def test_token_joins_even_from_a_stranger() -> None:
    """The token is the proof; who forwards it is for authentication, not linking."""
    d = decide(link(sender="eve@evil.test", by_token=ticket(1)))
    assert d.ticket_id == 1


def test_references_beat_tag() -> None:
    """A Message-ID we stored or sent outranks the subject tag."""
    d = decide(link(by_reference=ticket(2), by_tag=ticket(3), tag_id=3))
    assert (d.ticket_id, d.via) == (2, "references")


def test_references_join_without_tag() -> None:
    """A reply whose client dropped the tag still joins through In-Reply-To."""
    d = decide(link(sender="someone@else.test", by_reference=ticket(2)))
    assert (d.ticket_id, d.via) == (2, "references")


@pytest.mark.parametrize(
    "sender", [CAROL, "dave@customer.com", "alice@example.com"], ids=["requester", "cc", "agent"]
)
def test_tag_joins_for_people_on_the_ticket(sender: str) -> None:
    """Requester, Cc'd participant and agents may join by tag alone."""
    d = decide(link(sender=sender, by_tag=ticket(3, cc=("dave@customer.com",)), tag_id=3))
    assert (d.ticket_id, d.via, d.claimed_tag) == (3, "subject-tag", None)


def test_tag_from_a_stranger_opens_a_new_ticket_noting_the_claim() -> None:
    """Copying someone else's tag does not write into their ticket."""
    d = decide(link(sender="eve@evil.test", by_tag=ticket(3), tag_id=3))
    assert (d.ticket_id, d.via, d.claimed_tag, d.follows) == (None, "new", 3, None)
    assert "eve@evil.test" in d.reason


def test_tag_with_missing_sender_opens_a_new_ticket() -> None:
    """A message with no From proves nobody, so the tag alone does not join."""
    d = decide(link(sender="", by_tag=ticket(3, cc=("",)), tag_id=3))
    assert (d.ticket_id, d.claimed_tag) == (None, 3)


def test_tag_of_a_missing_ticket_opens_a_new_ticket() -> None:
    """A tag naming no ticket opens a new one and notes the claimed id."""
    d = decide(link(tag_id=999))
    assert (d.ticket_id, d.via, d.claimed_tag) == (None, "new", 999)


@pytest.mark.parametrize("field", ["by_token", "by_reference", "by_tag"])
def test_reply_to_closed_ticket_opens_a_follow_up(field: str) -> None:
    """Any evidence leading to a closed ticket opens a new ticket that follows it."""
    d = decide(link(**{field: ticket(5, status="closed")}, tag_id=5 if field == "by_tag" else None))
    assert (d.ticket_id, d.via, d.follows, d.claimed_tag) == (None, "new", 5, None)


def test_stranger_tag_on_closed_ticket_is_a_claim_not_a_follow_up() -> None:
    """A stranger cannot link their ticket to someone else's closed one by its tag."""
    d = decide(link(sender="eve@evil.test", by_tag=ticket(5, status="closed"), tag_id=5))
    assert (d.follows, d.claimed_tag) == (None, 5)


@pytest.mark.parametrize("status", ["new", "open", "pending", "resolved"])
def test_reply_to_non_closed_ticket_joins(status: str) -> None:
    """Pending and resolved tickets are joined (the workflow reopens them)."""
    assert decide(link(by_token=ticket(6, status=status))).ticket_id == 6


statuses = st.sampled_from(["new", "open", "pending", "resolved", "closed"])
emails = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.test", fullmatch=True)


@given(statuses, emails, st.frozensets(emails, max_size=4), emails, st.integers(1, 10**9))
def test_strangers_tag_only_mail_never_joins(
    status: str, requester: str, cc: frozenset[str], sender: str, tid: int
) -> None:
    """With only a tag, a sender not on the ticket never joins or links to it."""
    facts = TicketFacts(tid, status, requester, cc | {requester})
    if sender in facts.participants or sender in AGENTS:
        return
    d = decide(link(sender=sender, by_tag=facts, tag_id=tid))
    assert d.ticket_id is None
    assert d.follows is None
    assert d.claimed_tag == tid


@given(statuses, st.integers(1, 10**9))
def test_a_decision_never_joins_a_closed_ticket(status: str, tid: int) -> None:
    """Joined tickets are never closed; closed ones are followed instead."""
    d = decide(link(by_reference=ticket(tid, status=status)))
    if status == "closed":
        assert (d.ticket_id, d.follows) == (None, tid)
    else:
        assert (d.ticket_id, d.follows) == (tid, None)
