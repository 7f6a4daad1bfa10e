"""A message's identity for deduplication, read from raw bytes without parsing.

The same message reaches us more than once: the MTA retries after a lost
250, an IMAP fetch races a crash, an admin imports an mbox twice, or the same
mail arrives both by SMTP and by IMAP. Its key is its Message-ID plus a hash
of its content without the trace headers that every hop adds (RFC 5321
§4.4: Received, Return-Path; plus Delivered-To and friends), so all of those
copies collapse into one spool item. This runs on the accept path: bytes only.
"""

from __future__ import annotations

import hashlib
import re

# Headers added or rewritten in transit; they differ between copies of one message.
TRACE_HEADERS = frozenset(
    {
        b"received",
        b"return-path",
        b"delivered-to",
        b"x-original-to",
        b"x-received",
        b"x-envelope-from",
        b"x-envelope-to",
        b"envelope-to",
        b"authentication-results",
        b"arc-seal",
        b"arc-message-signature",
        b"arc-authentication-results",
        b"received-spf",
        b"x-spam-status",
        b"x-spam-score",
        b"x-spam-level",
        b"x-spam-flag",
        b"x-spam-checker-version",
        b"x-virus-scanned",
        b"status",
        b"x-status",
        b"x-keywords",
        b"x-uid",
        b"lines",
        b"content-length",
        b"x-mailtix-spool",
    }
)

_SPLIT = re.compile(rb"\r?\n\r?\n")
_MSGID = re.compile(rb"<[^<>\s]+>|[^<>\s]+")


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """The header block and the body of raw (body is b"" when there is none)."""
    m = _SPLIT.search(raw)
    if m is None:
        return raw, b""
    return raw[: m.start()], raw[m.end() :]


def header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-cased name, unfolded raw value) pairs of a header block, in order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b" " + line.strip())
            continue
        name, sep, value = line.partition(b":")
        if sep and name and b" " not in name.strip():
            fields.append((name.strip().lower(), value.strip()))
    return fields


def message_id_of(head: bytes) -> str | None:
    """The Message-ID of a raw header block, normalised to `<id>`, if any."""
    for name, value in header_fields(head):
        if name == b"message-id":
            m = _MSGID.search(value)
            if m:
                token = m.group(0).decode("ascii", "backslashreplace")
                return token if token.startswith("<") else f"<{token}>"
    return None


def dedupe_key(raw: bytes) -> tuple[str, str | None]:
    """(hex key, Message-ID) for raw; equal keys mean the same message."""
    head, body = split_head(raw)
    fields = header_fields(head)
    msgid = message_id_of(head)
    h = hashlib.sha256()
    h.update((msgid or "").encode("ascii", "backslashreplace") + b"\0")
    for name, value in fields:
        if name not in TRACE_HEADERS:
            h.update(name + b":" + value + b"\n")
    h.update(b"\0")
    h.update(body.replace(b"\r\n", b"\n").rstrip(b"\n"))
    return h.hexdigest(), msgid
