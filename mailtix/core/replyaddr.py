"""Signed reply addresses: `support+<token>@domain`, one per ticket and recipient (SPEC §3).

The token is `<ticket id>-<recipient digest><mac>`, all lower-case letters,
digits and a hyphen, because some MTAs lower-case local parts on the way in
(RFC 5321 §2.4 only asks them not to). The recipient digest is keyed, so the
address reveals nothing about who it was sent to; the MAC covers the id and
the digest, so neither can be changed or moved to another ticket. Each agent
and customer gets a different address, which is what lets `core.auth` tell
who replied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL_PART = 64
_DIGEST_BYTES = 5  # 40 bits: tells recipients of one ticket apart, 8 base32 chars
_MAC_BYTES = 10  # 80 bits: forging needs ~2**80 tries against a rate-limited MTA, 16 chars
_DIGEST_LEN = _DIGEST_BYTES * 8 // 5
_MAC_LEN = _MAC_BYTES * 8 // 5
_MAX_ID_DIGITS = 18
# Canonical decimal only (no leading zeros), so one ticket has one token per recipient.
_TOKEN = re.compile(
    rf"(0|[1-9][0-9]{{0,{_MAX_ID_DIGITS - 1}}})-([a-z2-7]{{{_DIGEST_LEN}}})([a-z2-7]{{{_MAC_LEN}}})"
)
# Distinct HMAC domains, so a digest can never be replayed as a MAC or vice versa.
_DIGEST_LABEL = b"mailtix/reply-recipient/v1\0"
_MAC_LABEL = b"mailtix/reply-token/v1\0"


@dataclass(frozen=True)
class ReplyToken:
    """A verified reply token: which ticket, for whom (keyed digest), on which base address."""

    ticket_id: int
    recipient_digest: str
    base_address: str  # lower-cased, without the "+token"

    def issued_to(self, email: str, secret: bytes) -> bool:
        """Whether this token was made for email (any case)."""
        return hmac.compare_digest(self.recipient_digest, _recipient_digest(email, secret))


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _recipient_digest(email: str, secret: bytes) -> str:
    mac = hmac.new(secret, _DIGEST_LABEL + email.strip().lower().encode(), hashlib.sha256)
    return _b32(mac.digest()[:_DIGEST_BYTES])


def _mac(ticket_id: int, digest: str, secret: bytes) -> str:
    msg = _MAC_LABEL + f"{ticket_id}\0{digest}".encode("ascii")
    return _b32(hmac.new(secret, msg, hashlib.sha256).digest()[:_MAC_BYTES])


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.strip().strip("<>").strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    return local, domain


def make(base_address: str, ticket_id: int, recipient: str, secret: bytes) -> str:
    """The signed reply address of ticket_id for recipient, on base_address's mailbox."""
    if ticket_id < 0 or len(str(ticket_id)) > _MAX_ID_DIGITS:
        raise ValueError(f"ticket id out of range: {ticket_id}")
    local, domain = _split(base_address)
    local = local.split("+", 1)[0]
    digest = _recipient_digest(recipient, secret)
    token = f"{ticket_id}-{digest}{_mac(ticket_id, digest, secret)}"
    tagged = f"{local}+{token}"
    if len(tagged.encode()) > MAX_LOCAL_PART:
        raise ValueError(
            f"{base_address}: local part too long for a reply token "
            f"({len(tagged.encode())} > {MAX_LOCAL_PART} octets)"
        )
    return f"{tagged}@{domain}".lower()


def parse(address: str, secret: bytes) -> ReplyToken | None:
    """The verified token of a reply address, or None if it has none or it does not verify."""
    try:
        local, domain = _split(address)
    except ValueError:
        return None
    base, plus, token = local.lower().rpartition("+")
    m = _TOKEN.fullmatch(token)
    if not plus or not base or m is None:
        return None
    ticket_id, digest, mac = int(m.group(1)), m.group(2), m.group(3)
    # Constant time, so response timing leaks nothing about a correct MAC's prefix.
    if not hmac.compare_digest(mac, _mac(ticket_id, digest, secret)):
        return None
    return ReplyToken(ticket_id, digest, f"{base}@{domain.lower()}")
