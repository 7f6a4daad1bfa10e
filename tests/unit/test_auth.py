"""Authenticating the sender of a message (SPEC §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtix.core import replyaddr
from mailtix.core.auth import aligned, authenticate
from mailtix.core.message import ParsedMessage

SECRET = b"test-secret-0123456789"
AGENTS = frozenset({"alice@example.com"})
TRUSTED = frozenset({"mx.example.com"})


def message(sender: str, *auth_results: str) -> ParsedMessage:
    headers = {"authentication-results": auth_results} if auth_results else {}
    return ParsedMessage(
        message_id="<m@x>", subject="s", from_addr=sender, from_name="", to=(), cc=(),
        reply_to=(), in_reply_to=(), references=(), date=None, text="", html=None,
        headers=headers,
    )  # fmt: skip


def token_for(recipient: str, ticket_id: int = 7) -> replyaddr.ReplyToken:
    token = replyaddr.parse(
        replyaddr.make("support@example.com", ticket_id, recipient, SECRET), SECRET
    )
    assert token is not None
    return token


def auth(msg: ParsedMessage, token: replyaddr.ReplyToken | None = None, trusted=TRUSTED):
    return authenticate(msg, token, agents=AGENTS, trusted_authserv_ids=trusted, secret=SECRET)


def test_agent_replying_to_their_own_token_is_authenticated() -> None:
    """A reply to the signed address issued to alice, from alice, proves alice."""
    actor = auth(message("alice@example.com"), token_for("alice@example.com"))
    assert (actor.email, actor.is_agent, actor.authenticated, actor.how) == (
        "alice@example.com", True, True, "reply-address",
    )  # fmt: skip


def test_forged_from_with_someone_elses_token_is_not_authenticated() -> None:
    """Carol's token with "From: alice" (forged) proves nothing about alice."""
    actor = auth(message("alice@example.com"), token_for("carol@customer.com"))
    assert actor.is_agent
    assert not actor.authenticated


def test_forged_from_without_any_proof_is_not_authenticated() -> None:
    """An agent's address in From alone is not enough."""
    actor = auth(message("alice@example.com"))
    assert (actor.is_agent, actor.authenticated) == (True, False)


def test_customer_with_their_token_is_authenticated_but_not_an_agent() -> None:
    """Authentication and agent status are separate facts."""
    actor = auth(message("carol@customer.com"), token_for("carol@customer.com"))
    assert (actor.is_agent, actor.authenticated) == (False, True)


@pytest.mark.parametrize(
    "header",
    [
        "mx.example.com; dkim=pass header.d=example.com header.s=sel",
        "mx.example.com; dkim=pass header.d=mail.example.com",
        "MX.Example.COM; dkim=pass header.i=@example.com",
        "mx.example.com; spf=pass smtp.mailfrom=bounces@example.com",
        "mx.example.com; dkim=fail header.d=example.com; spf=pass smtp.mailfrom=example.com",
    ],
)
def test_trusted_aligned_pass_authenticates(header: str) -> None:
    """DKIM or SPF pass, aligned with the From domain, from our server, is proof."""
    actor = auth(message("alice@example.com", header))
    assert actor.authenticated
    assert "by mx.example.com" in actor.how


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("evil.test; dkim=pass header.d=example.com", "authserv-id not trusted"),
        ("mx.example.com; dkim=fail header.d=example.com", "dkim failed"),
        ("mx.example.com; dkim=pass header.d=evil.test", "signer not aligned"),
        ("mx.example.com; dkim=pass header.d=notexample.com", "suffix but not subdomain"),
        ("mx.example.com; spf=pass smtp.mailfrom=evil.test", "mail from not aligned"),
        ("mx.example.com; spf=softfail smtp.mailfrom=example.com", "spf softfail"),
        ("mx.example.com; dkim=pass header.d=com", "a bare TLD"),
        ("mx.example.com; dmarc=pass header.from=example.com", "not dkim or spf"),
        ("mx.example.com; none", "no results"),
        (";;; garbage ===", "unparseable"),
        ("", "empty"),
    ],
)
def test_no_aligned_trusted_pass_means_not_authenticated(header: str, why: str) -> None:
    """Anything short of a trusted, aligned DKIM/SPF pass proves nothing."""
    assert not auth(message("alice@example.com", header)).authenticated, why


def test_no_trusted_servers_configured_trusts_no_header() -> None:
    """With an empty trusted set, Authentication-Results are ignored."""
    msg = message("alice@example.com", "mx.example.com; dkim=pass header.d=example.com")
    assert not auth(msg, trusted=frozenset()).authenticated


def test_a_later_valid_header_counts_after_an_unparseable_one() -> None:
    """One broken header does not hide a good one."""
    msg = message("alice@example.com", "(((", "mx.example.com; dkim=pass header.d=example.com")
    assert auth(msg).authenticated


def test_message_without_from_is_nobody() -> None:
    """No From address: not an agent, not authenticated."""
    actor = auth(message(""), token_for("alice@example.com"))
    assert (actor.email, actor.is_agent, actor.authenticated) == ("", False, False)


@pytest.mark.parametrize(
    ("domain", "from_domain", "expected"),
    [
        ("example.com", "example.com", True),
        ("mail.example.com", "example.com", True),
        ("example.com", "eu.example.com", True),
        ("eu.example.com", "us.example.com", False),
        ("example.com.evil.test", "example.com", False),
        ("com", "example.com", False),
    ],
)
def test_relaxed_alignment(domain: str, from_domain: str, expected: bool) -> None:
    """Same domain or subdomain aligns; look-alikes and bare TLDs do not."""
    assert aligned(domain, from_domain) is expected


@given(st.text(max_size=80))
def test_any_authentication_results_value_never_raises(header: str) -> None:
    """Whatever a header says, authenticate returns an Actor."""
    actor = auth(message("alice@example.com", header))
    assert actor.email == "alice@example.com"
