"""Who wrote a message, and whether we can prove it (SPEC §4).

A From header proves nothing: anyone can write "From: alice@example.com".
Proof is either a signed reply address issued to that sender (core.replyaddr),
or an Authentication-Results header (RFC 8601) written by a mail server we
trust, saying DKIM or SPF passed for a domain aligned with the From domain.

RFC 8601 §5 requires the border MTA to delete Authentication-Results fields
that carry its own authserv-id from incoming mail; only then can a sender not
forge one. That is a deployment requirement for trusted_authserv_ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import authres
from authres.core import AuthResError

from mailtix.core.message import ParsedMessage
from mailtix.core.replyaddr import ReplyToken

AUTH_RESULTS = "authentication-results"


@dataclass(frozen=True)
class Actor:
    """The sender of a message: their address, whether they are an agent, and how we know."""

    email: str
    is_agent: bool
    authenticated: bool
    how: str  # "reply-address", "dkim header.d=… by …", "spf smtp.mailfrom=… by …", or why not


def authenticate(
    msg: ParsedMessage,
    token: ReplyToken | None,
    *,
    agents: frozenset[str],
    trusted_authserv_ids: frozenset[str],
    secret: bytes,
) -> Actor:
    """The Actor of msg: authenticated by a reply token issued to them or aligned DKIM/SPF."""
    email = msg.from_addr.strip().lower()
    is_agent = email in {a.lower() for a in agents}
    if not email:
        return Actor("", False, False, "no From address")
    if token is not None and token.issued_to(email, secret):
        return Actor(email, is_agent, True, "reply-address")
    proof = _authentication_results_proof(msg, email, trusted_authserv_ids)
    if proof is not None:
        return Actor(email, is_agent, True, proof)
    return Actor(email, is_agent, False, "no proof of the From address")


def _authentication_results_proof(
    msg: ParsedMessage, email: str, trusted: frozenset[str]
) -> str | None:
    """How a trusted Authentication-Results header vouches for email's domain, if one does."""
    from_domain = email.rpartition("@")[2]
    if not from_domain or not trusted:
        return None
    trusted_ids = {t.strip().lower() for t in trusted}
    for header in msg.headers.get(AUTH_RESULTS, ()):
        parsed = _parse(header)
        if parsed is None or parsed.authserv_id not in trusted_ids:
            continue
        for method, domain in _passes(parsed):
            if aligned(domain, from_domain):
                return f"{method}={domain} by {parsed.authserv_id}"
    return None


def _parse(value: str) -> authres.AuthenticationResultsHeader | None:
    """The parsed header, or None: an unparseable header is ignored, never fatal."""
    try:
        return authres.AuthenticationResultsHeader.parse_value(value)
    except (AuthResError, ValueError, IndexError, AttributeError, TypeError):
        return None


def _passes(parsed: authres.AuthenticationResultsHeader) -> Iterator[tuple[str, str]]:
    """(method.property, domain) of every dkim/spf result that passed."""
    for result in parsed.results:
        method = str(getattr(result, "method", "")).lower()
        if method not in ("dkim", "spf") or str(getattr(result, "result", "")).lower() != "pass":
            continue
        for prop in getattr(result, "properties", ()):
            key = f"{prop.type}.{prop.name}"
            # DKIM: the signing domain d=, or the identity i= (RFC 6376 §3.5)
            # some servers report instead; SPF: the MAIL FROM domain (RFC 7208 §2.4).
            if key in ("header.d", "header.i", "smtp.mailfrom") and prop.value:
                domain = str(prop.value).rpartition("@")[2].strip().lower().rstrip(".")
                if domain:
                    yield f"{method} {key}", domain


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1): one domain is the other or a subdomain of it.

    Without the Public Suffix List we cannot compute organisational domains,
    so sibling subdomains (eu.example.com vs us.example.com) do not align:
    stricter than DMARC, never looser. A bare top-level "domain" never aligns.
    """
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if "." not in domain or "." not in from_domain:
        return False
    return (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )
