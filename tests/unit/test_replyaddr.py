"""Signed reply addresses (SPEC §3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtix.core import replyaddr

SECRET = b"test-secret-0123456789"
BASE = "support@example.com"
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"

emails = st.from_regex(r"[a-z0-9._]{1,20}@[a-z0-9]{1,15}\.[a-z]{2,6}", fullmatch=True)
ids = st.integers(min_value=0, max_value=10**18 - 1)


def _token(address: str) -> str:
    return address.split("@", 1)[0].split("+", 1)[1]


def test_make_gives_a_plus_address_on_the_base_mailbox() -> None:
    """The address is support+<token>@domain, lower-case, with the ticket id readable."""
    addr = replyaddr.make(BASE, 42, "Carol@Customer.com", SECRET)
    assert addr.startswith("support+42-")
    assert addr.endswith("@example.com")
    assert addr == addr.lower()


@given(ids, emails)
def test_round_trip(ticket_id: int, recipient: str) -> None:
    """A made address parses back to its ticket, base address and recipient."""
    addr = replyaddr.make(BASE, ticket_id, recipient, SECRET)
    token = replyaddr.parse(addr, SECRET)
    assert token is not None
    assert token.ticket_id == ticket_id
    assert token.base_address == BASE
    assert token.issued_to(recipient, SECRET)
    assert token.issued_to(recipient.upper(), SECRET)


@given(ids, emails, st.data())
def test_any_single_char_change_of_the_token_is_rejected(
    ticket_id: int, recipient: str, data: st.DataObject
) -> None:
    """Changing one character of the token (other than its case) breaks the signature."""
    addr = replyaddr.make(BASE, ticket_id, recipient, SECRET)
    token = _token(addr)
    i = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    new = data.draw(st.sampled_from(ALPHABET).filter(lambda c: c != token[i]))
    forged = addr.replace(token, token[:i] + new + token[i + 1 :])
    assert replyaddr.parse(forged, SECRET) is None


@given(ids, emails, emails)
def test_token_for_one_recipient_is_not_issued_to_another(ticket_id: int, a: str, b: str) -> None:
    """Each recipient of a ticket gets their own token; A's is not B's."""
    if a == b:
        return
    token = replyaddr.parse(replyaddr.make(BASE, ticket_id, a, SECRET), SECRET)
    assert token is not None
    assert not token.issued_to(b, SECRET)


def test_parse_is_case_insensitive() -> None:
    """MTAs that upper- or lower-case the local part do not break the token."""
    addr = replyaddr.make(BASE, 7, "carol@customer.com", SECRET)
    token = replyaddr.parse(addr.upper(), SECRET)
    assert token is not None
    assert token.ticket_id == 7


def test_parse_accepts_angle_brackets() -> None:
    """An address as written in a header, "<…>", still parses."""
    addr = replyaddr.make(BASE, 7, "carol@customer.com", SECRET)
    assert replyaddr.parse(f" <{addr}> ", SECRET) is not None


def test_another_secret_rejects_the_token() -> None:
    """A token made with one secret does not verify with another."""
    addr = replyaddr.make(BASE, 7, "carol@customer.com", SECRET)
    assert replyaddr.parse(addr, b"other-secret") is None


def test_token_cannot_be_moved_to_another_ticket() -> None:
    """Swapping the id of a valid token for another ticket's id fails."""
    addr = replyaddr.make(BASE, 7, "carol@customer.com", SECRET)
    assert replyaddr.parse(addr.replace("+7-", "+8-"), SECRET) is None


def test_leading_zero_id_is_rejected() -> None:
    """Only the canonical spelling of an id is accepted."""
    addr = replyaddr.make(BASE, 7, "carol@customer.com", SECRET)
    assert replyaddr.parse(addr.replace("+7-", "+07-"), SECRET) is None


@pytest.mark.parametrize(
    "address",
    ["support@example.com", "support+@example.com", "support+hello@example.com", "", "@", "x+1-@y"],
)
def test_addresses_without_a_valid_token_give_none(address: str) -> None:
    """Plain, empty and malformed addresses have no token."""
    assert replyaddr.parse(address, SECRET) is None


@given(ids, emails)
def test_local_part_fits_rfc5321_limit(ticket_id: int, recipient: str) -> None:
    """The local part stays within 64 octets (RFC 5321 §4.5.3.1.1)."""
    addr = replyaddr.make("helpdesk-support@example.com", ticket_id, recipient, SECRET)
    assert len(addr.split("@")[0]) <= 64


def test_make_refuses_a_base_too_long_for_a_token() -> None:
    """A base local part leaving no room for the token is a configuration error."""
    with pytest.raises(ValueError, match="too long"):
        replyaddr.make("a" * 40 + "@example.com", 1, "c@d.com", SECRET)
