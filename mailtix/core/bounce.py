"""Read a bounce: which recipients failed, how, and which message of ours bounced.

RFC 3464 reports (a message/delivery-status part in an RFC 6522
multipart/report) are read field by field from the raw bytes with the stdlib
`email` package; everything else (Postfix, Exim, qmail, sendmail, Exchange,
Notes… in plain text) goes to `core.bounce_text`. The original Message-ID
comes from the returned message (message/rfc822 or text/rfc822-headers), from
headers quoted in the text, or from the bounce's own In-Reply-To, so the lead
can match it against the outbox. A VERP return path (`bounces+{token}@…`)
identifies the bounced mail without reading the bounce at all: `verp_token`.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email import policy
from email.message import Message

from mailtix.core import bounce_text
from mailtix.core.bounce_text import (
    ENHANCED_STATUS,
    failed_addresses,
    field_blocks,
    notice_only,
    original_message_id_in_text,
)
from mailtix.core.message import ParsedMessage

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers",
                   "message/global-headers")
_MSGID = re.compile(r"<[^<>\s]+>")
_MAX_DIAGNOSTIC = 500
_MAX_NOTICE = 256 * 1024  # the heuristics read the notice, never a 25 MB attachment's text
_MAX_PARTS = 200  # a hostile message may hold thousands of parts; the report is near the top
_MAX_DEPTH = 20


@dataclass(frozen=True)
class BouncedRecipient:
    """One recipient a bounce reports on (RFC 3464 §2.3)."""

    address: str  # lower-cased; as reported (may lack a domain: "f.b")
    status: str | None  # RFC 3463 enhanced code, "5.1.1"; None when the bounce gives none
    action: str | None  # "failed", "delayed", "delivered", "relayed", "expanded"
    diagnostic: str | None  # the remote server's words, "550 5.1.1 user unknown"

    @property
    def hard(self) -> bool:
        """A permanent failure: the address should not be written to again as is."""
        if self.action not in (None, "failed"):
            return False
        if self.status:
            return self.status.startswith("5")
        basic = bounce_text.BASIC_CODE.search(self.diagnostic or "")
        return basic is None or basic.group(1).startswith("5")


@dataclass(frozen=True)
class BounceReport:
    """What a bounce says: the recipients, and the Message-ID of the mail that bounced."""

    recipients: tuple[BouncedRecipient, ...]
    original_message_id: str | None
    hard: bool  # at least one recipient failed permanently

    @property
    def delay_only(self) -> bool:
        """Only a delay warning ("Action: delayed"): the mail may still arrive."""
        return bool(self.recipients) and all(r.action == "delayed" for r in self.recipients)


def parse_bounce(msg: ParsedMessage, raw: bytes) -> BounceReport | None:
    """Read a bounce's failed recipients and original Message-ID; None if it names neither."""
    root = _load(raw)
    notice = _notice_text(root, msg)
    recipients = _dsn_recipients(root) if root is not None else []
    if not recipients:
        recipients = _text_recipients(msg, notice)
    original = _original_message_id(root, msg, notice)
    if not recipients and original is None:
        return None
    unique = tuple(dict.fromkeys(recipients))
    return BounceReport(unique, original, any(r.hard for r in unique))


def verp_token(rcpt: str, template: str = "bounces+{token}@") -> str | None:
    """The token in a VERP address built from template ("bounces+{token}@example.com"), or None."""
    local_t, at_t, domain_t = template.partition("@")
    prefix, found, suffix = local_t.partition("{token}")
    local, at, domain = rcpt.strip().strip("<>").strip().rpartition("@")
    if not found or not at:
        return None
    if at_t and domain_t and domain.lower() != domain_t.lower():
        return None
    lowered = local.lower()
    if not (lowered.startswith(prefix.lower()) and lowered.endswith(suffix.lower())):
        return None
    token = local[len(prefix): len(local) - len(suffix)]
    # MTAs may fold the local part's case (autoreply/bounceparser-whitelist.eml):
    # the token is returned as written; mint tokens that survive case folding.
    return token if re.fullmatch(r"[A-Za-z0-9._=-]+", token) else None


# ------------------------------------------------------------ raw structure
def _load(raw: bytes) -> Message | None:
    """The stdlib tree of the raw bytes (line endings made uniform), or None if unreadable."""
    # CR-only files exist (malformed/sisimai-mac-*.eml); the parser only knows LF/CRLF.
    uniform = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return email.message_from_bytes(uniform, policy=policy.compat32)
    except (ValueError, TypeError, LookupError, RecursionError, IndexError):
        return None


def _parts(root: Message) -> list[Message]:
    """Every part, depth first, capped in number and depth (no recursion: hostile nesting)."""
    found: list[Message] = []
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack and len(found) < _MAX_PARTS:
        part, depth = stack.pop()
        found.append(part)
        payload = part.get_payload()
        if isinstance(payload, list) and depth < _MAX_DEPTH:
            children = [p for p in payload if isinstance(p, Message)]
            stack.extend((child, depth + 1) for child in reversed(children))
    return found


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except (ValueError, TypeError, IndexError):
        return "application/octet-stream"


def _part_text(part: Message) -> str:
    """The decoded text of a leaf part; undecodable bytes become U+FFFD (heuristics only)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        return payload.decode(charset, errors="replace")
    except (LookupError, ValueError):
        return payload.decode("latin-1")


def _dsn_text(part: Message) -> str:
    """The text of a message/delivery-status part, rebuilt from the stdlib's field blocks.

    The stdlib splits the part into one header block per blank line; a block
    whose continuation lines are not indented (bounces/sisimai-lhost-messagelabs-01.eml)
    keeps its tail as a payload. Both are joined back so `field_blocks` can
    read them with its more tolerant rules.
    """
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload
    blocks: list[str] = []
    for block in payload if isinstance(payload, list) else []:
        lines = [f"{name}: {value}" for name, value in block.items()]
        tail = block.get_payload()
        if isinstance(tail, str) and tail.strip():
            lines.append(tail)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# ------------------------------------------------------------- RFC 3464
def _dsn_recipients(root: Message) -> list[BouncedRecipient]:
    """The per-recipient fields of every delivery-status part (RFC 3464 §2.3)."""
    found: list[BouncedRecipient] = []
    for part in _parts(root):
        if _content_type(part) in _DSN_TYPES:
            found.extend(recipients_from_fields(_dsn_text(part)))
    return found


def recipients_from_fields(text: str) -> list[BouncedRecipient]:
    """The recipients of RFC 3464 field blocks in text (per-message blocks are skipped)."""
    found = []
    for block in field_blocks(text):
        address = _recipient_address(block)
        if address:
            found.append(_recipient(address, block))
    return found


def _recipient_address(block: dict[str, str]) -> str | None:
    # Final-Recipient is required; Original-Recipient or X-Actual-Recipient stand in.
    for name in ("final-recipient", "x-actual-recipient", "original-recipient"):
        value = block.get(name)
        if value:
            _, semi, address = value.partition(";")
            address = (address if semi else value).strip().strip("<>").strip().lower()
            if address and " " not in address:
                return address
    return None


def _recipient(address: str, block: dict[str, str]) -> BouncedRecipient:
    diagnostic = _diagnostic(block.get("diagnostic-code"))
    status = _status(block.get("status"))
    detailed = _status(diagnostic)
    # Many MTAs write a generic "Status: 5.0.0" and the remote server's precise
    # code in the diagnostic (bounces/sisimai-lhost-courier-01.eml): keep the precise one.
    if status is None or (status.endswith(".0.0") and detailed and detailed[0] == status[0]):
        status = detailed or status
    action = (block.get("action") or "").strip().lower().split(" ")[0] or None
    if action is None and status:
        action = "failed" if status[0] in "45" else "delivered"
    return BouncedRecipient(address, status, action, diagnostic)


def _status(value: str | None) -> str | None:
    found = ENHANCED_STATUS.search(value or "")
    return found.group(0) if found else None


def _diagnostic(value: str | None) -> str | None:
    if not value:
        return None
    kind, semi, rest = value.partition(";")
    text = rest if semi and len(kind) < 20 else value  # "smtp; 550 …" → "550 …"
    text = " ".join(text.split())
    return text[:_MAX_DIAGNOSTIC] or None


# ------------------------------------------------------ the notice's text
def _text_recipients(msg: ParsedMessage, text: str) -> list[BouncedRecipient]:
    """Recipients of a bounce without a usable report: fields, header, then prose."""
    inline = recipients_from_fields(notice_only(text))
    if inline:
        return inline
    exclude = frozenset({msg.from_addr, *msg.to, *msg.cc})
    reasons = dict(failed_addresses(text, exclude))
    # Exim and Gmail list them in a header (bounces/bounceparser-non-autoreply.eml).
    listed = [a.strip().strip("<>").lower() for a in
              ",".join(msg.headers.get("x-failed-recipients", ())).split(",") if "@" in a]
    action = "delayed" if bounce_text.temporary(text) else "failed"
    addresses = list(dict.fromkeys([*listed, *reasons]))
    if not addresses:
        # Only the returned copy names a recipient (bounces/sisimai-lhost-v5sendmail-01.eml):
        # trust it when it names exactly one.
        quoted = bounce_text.original_recipients(text, exclude)
        addresses = quoted if len(quoted) == 1 else []
    # With one recipient, the session transcript's reply is its reason
    # (bounces/sisimai-lhost-activehunter-01.eml: "550 sorry, no mailbox here (#5.1.1)").
    transcript = bounce_text.first_reply_line(text) if len(addresses) == 1 else None
    found = []
    for address in addresses:
        diagnostic = _diagnostic(reasons.get(address))
        if transcript and not (diagnostic and bounce_text.BASIC_CODE.search(diagnostic)):
            diagnostic = _diagnostic(f"{diagnostic or ''} {transcript}")
        found.append(BouncedRecipient(address, _status(diagnostic), action, diagnostic))
    return found


def _notice_text(root: Message | None, msg: ParsedMessage) -> str:
    """The human-readable text of the bounce, without the returned message."""
    if root is None:
        return msg.text
    texts: list[str] = []
    skip: set[int] = set()
    for part in _parts(root):
        if id(part) in skip:
            continue
        kind = _content_type(part)
        if kind in _ORIGINAL_TYPES and part is not root:
            skip.update(id(p) for p in _parts(part))
        elif kind == "text/plain" and not part.is_multipart():
            texts.append(_part_text(part))
        elif kind.startswith("multipart/") and isinstance(part.get_payload(), str):
            # Boundary missing or wrong (bounces/sisimai-rfc3464-04.eml): the body is one text.
            texts.append(_part_text(part) or str(part.get_payload()))
    joined = "\n\n".join(t for t in texts if t.strip())
    return (joined or msg.text)[:_MAX_NOTICE]


def _original_message_id(root: Message | None, msg: ParsedMessage, notice: str) -> str | None:
    """The Message-ID of the mail that bounced: returned copy, quoted headers, In-Reply-To."""
    if root is not None:
        for part in _parts(root):
            if part is root or _content_type(part) not in _ORIGINAL_TYPES:
                continue
            found = _returned_message_id(part)
            if found:
                return found
    quoted = original_message_id_in_text(notice)
    if quoted:
        return quoted
    # Some MTAs thread their bounce to the original (bounces/bounceparser-warning-5.eml).
    return msg.in_reply_to[0] if msg.in_reply_to else None


def _returned_message_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        value = payload[0].get("message-id")
        found = _MSGID.search(str(value)) if value is not None else None
        if found:
            return found.group(0)
    # text/rfc822-headers, or a message/rfc822 the stdlib left as text.
    return original_message_id_in_text(_part_text(part) if isinstance(payload, str) else "",
                                       anywhere=True)
