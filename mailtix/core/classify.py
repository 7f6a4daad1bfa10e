"""Decide what kind of mail a message is, and whether it may get an automatic reply.

A readable list of small rules (RFC 3834 §2 and the corpus), first match wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mailtix.core.message import ParsedMessage

Kind = Literal["human", "auto_reply", "bounce", "list", "loop"]
LOOP_HEADER = "x-mailtix-loop"


@dataclass(frozen=True)
class Disposition:
    """What a message is, why we think so, and whether we may answer it automatically."""

    kind: Kind
    reason: str = ""

    @property
    def may_auto_reply(self) -> bool:
        return self.kind == "human"

    @classmethod
    def human(cls) -> Disposition:
        return cls("human", "no automated-mail marker")


@dataclass(frozen=True)
class Envelope:
    """What classification needs beyond the message: who we are, who sent it."""

    own_addresses: frozenset[str]
    mail_from: str = ""  # the SMTP envelope sender ("" for a null sender)


Rule = Callable[[ParsedMessage, Envelope], Disposition | None]


def _own_loop(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    if msg.has_header(LOOP_HEADER) or msg.from_addr in env.own_addresses:
        return Disposition("loop", "sent by mailtix itself")
    return None


def _auto_submitted(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    value = (msg.header("auto-submitted") or "no").strip().lower()
    if not value.startswith("no"):
        return Disposition("auto_reply", f"Auto-Submitted: {value}")
    return None


RULES: list[Rule] = [_own_loop, _auto_submitted]


def classify(msg: ParsedMessage, env: Envelope) -> Disposition:
    """The first rule that recognises msg decides; otherwise it is from a human."""
    for rule in RULES:
        found = rule(msg, env)
        if found is not None:
            return found
    return Disposition.human()
