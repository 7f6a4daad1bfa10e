"""Decide which ticket an incoming message belongs to (SPEC §3).

The caller looks up the candidates (reply-address token, Message-ID
references, subject tag) and passes them in as facts; this module only
decides. Evidence is ranked by how hard it is to forge: a signed reply
address, then a Message-ID we stored or sent, then the subject tag, which
anyone can copy and so is bound to the people already on the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED = "closed"


@dataclass(frozen=True)
class TicketFacts:
    """What linking needs to know about one candidate ticket."""

    id: int
    status: str  # new|open|pending|resolved|closed
    requester: str  # lower-cased email
    participants: frozenset[str]  # lower-cased emails (Cc'd people, requester included)


@dataclass(frozen=True)
class LinkInput:
    """The evidence an incoming message carries, resolved to tickets by the caller."""

    sender: str  # lower-cased From address
    by_token: TicketFacts | None  # ticket of a valid signed reply address among the recipients
    by_reference: TicketFacts | None  # ticket of a Message-ID named in In-Reply-To/References
    by_tag: TicketFacts | None  # ticket whose id the subject tag names, if it exists
    tag_id: int | None  # the id the subject tag claimed (even if no such ticket)
    agents: frozenset[str]  # configured agent emails, lower-cased


@dataclass(frozen=True)
class LinkDecision:
    """Join ticket_id, or open a new ticket (ticket_id None), and why."""

    ticket_id: int | None  # None: open a new ticket
    via: str  # "reply-address" | "references" | "subject-tag" | "new"
    reason: str  # a sentence for the ticket history
    follows: int | None = None  # a closed ticket the new one continues (link to it)
    claimed_tag: int | None = None  # a tag that a stranger's mail claimed (noted on the new ticket)


def _is_known(sender: str, ticket: TicketFacts, agents: frozenset[str]) -> bool:
    """Whether sender is already on ticket: requester, participant or agent."""
    sender = sender.strip().lower()
    if not sender:  # a missing From proves nothing
        return False
    return sender == ticket.requester or sender in ticket.participants or sender in agents


def _join(ticket: TicketFacts, via: str, evidence: str) -> LinkDecision:
    # SPEC §3: a reply to a closed ticket opens a new one that links back.
    if ticket.status.lower() == CLOSED:
        return LinkDecision(
            None,
            "new",
            f"Reply to closed ticket #{ticket.id} ({evidence}); "
            "opened a new ticket that follows it.",
            follows=ticket.id,
        )
    return LinkDecision(ticket.id, via, f"Joined ticket #{ticket.id}: {evidence}.")


def _by_tag(inp: LinkInput) -> LinkDecision:
    if inp.by_tag is None:
        tag = inp.tag_id
        return LinkDecision(
            None, "new", f"Subject names ticket #{tag}, which does not exist.", claimed_tag=tag
        )
    if not _is_known(inp.sender, inp.by_tag, inp.agents):
        # Anyone can copy a tag; only people on the ticket may write into it by tag.
        return LinkDecision(
            None,
            "new",
            f"Subject names ticket #{inp.by_tag.id}, but the sender "
            f"{inp.sender or '(unknown)'} is not on it; opened a new ticket.",
            claimed_tag=inp.by_tag.id,
        )
    evidence = f"the subject carries its tag and {inp.sender} is on it"
    return _join(inp.by_tag, "subject-tag", evidence)


def decide(inp: LinkInput) -> LinkDecision:
    """The ticket inp joins (token > references > tag), or a new ticket with the reason."""
    if inp.by_token is not None:
        return _join(inp.by_token, "reply-address", "sent to its signed reply address")
    if inp.by_reference is not None:
        return _join(inp.by_reference, "references", "it answers a message of the ticket")
    if inp.tag_id is not None or inp.by_tag is not None:
        return _by_tag(inp)
    return LinkDecision(None, "new", "No reply address, reference or tag; opened a new ticket.")
