"""Heuristics for bounces written as prose: which addresses failed, and why.

Used by `core.bounce` when a bounce has no RFC 3464 report, or a broken one.
Each pattern names the MTA family (and a corpus file) that forced it. Only the
notice itself is read: the returned copy of the original, which names every
recipient of the original, is cut off first.
"""

from __future__ import annotations

import re

# RFC 3463 enhanced status code, and the RFC 5321 §4.2 basic reply code.
ENHANCED_STATUS = re.compile(r"(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?![\d.])")
BASIC_CODE = re.compile(r"(?<![\d.])([45]\d\d)(?:[ -]|$)")

# Test domains such as "a.b.c" (bounces/bounceparser-warning-7.eml) have one-letter labels.
_ADDR = r"[^\s<>()\[\]\"',;:@]+@[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+"
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>|<[^<>\s]+>")
_QUOTED_MSGID = re.compile(r"^[ \t>]*Message-ID[ \t]*:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.M)

# Where the returned copy of the original begins (Exim, qmail, sendmail,
# Notes, Exchange, Yahoo, mail.ru…). Everything after is not the notice.
_COPY_MARKER = re.compile(
    r"^[ \t>-]*(?:"
    r"-* ?this is a copy of the message"
    r"|-* ?below this line is a copy of the message"
    r"|-* ?(?:original|unsent|returned) message(?: follows| header| headers)?[ \t:.-]*$"
    r"|-* ?the header of the original message"
    r"|-* ?returned mail follows"
    r"|-* ?message (?:headers|text|header) follows"
    r"|-* ?(?:unsent|undelivered) message follows"
    r"|-* ?original message headers"
    r"|-* ?the following is a copy of the original"
    r"|-* ?forwarded message"
    r"|received: ?from "
    r")",
    re.IGNORECASE | re.M,
)

# A line that names one failed recipient and maybe why:
#   Postfix "<a@b>: host mx[1.2.3.4] said: 550 5.1.1 …" (bounces/bounceparser-postfix.eml)
#   qmail   "<a@b>:" then the reason below (bounces/sisimai-lhost-qmail-01.eml)
#   sendmail "<a@b>" then "(reason: 550 …)"; Exim and Gmail a bare indented
#   address; Exchange 2003 "a@b on 3/20/2006 …" (bounces/bounceparser-exchange.unknown.eml)
_ADDRESS_LINE = re.compile(
    rf"^[ \t*>-]*[\"']?<?(?:mailto:)?({_ADDR})>?[\"']?(.*)$",
    re.IGNORECASE,
)
# "(expanded from …)", a repeated "<addr>", a colon, or Exchange's " on <date>".
_TAIL_NOISE = re.compile(
    r"^[ \t]*(?:\(expanded from[^)]*\)[ \t]*)?(?:<[^>]*>[ \t]*)?:?[ \t]*(?:on [^\n]*\d{4}.*$)?"
)
# Addresses named in the middle of a sentence of the notice:
#   "RCPT TO:<a@b>", "Could not be delivered to: <a@b>", "was not delivered to: a@b",
#   Notes "User some.name (a@b) not listed"…
_INLINE = re.compile(
    rf"(?:rcpt to:?[ \t]*<?|delivered to:?[ \t]*<?|deliver to:?[ \t]*<?|recipients?:?[ \t]*<?"
    rf"|mail to:?[ \t]*<?|user [^()\n]{{0,60}}\(|mailbox (?:of )?<?|address:?[ \t]*<?"
    rf"|to:?[ \t]+<|errors?:[ \t]*<?"
    rf"|:[ \t]*<?(?=[^\s<>]+@[^\s<>]+>?[ \t.]*$))({_ADDR})",
    re.IGNORECASE | re.M,
)
_DAEMONS = ("mailer-daemon", "postmaster", "post_master", "mail-daemon", "mailerdaemon",
            "root", "noreply", "no-reply", "abuse")
_TEMPORARY = re.compile(
    r"\b(?:will (?:continue|keep) (?:to )?try|still (?:be )?trying|has been delayed|"
    r"delivery (?:is )?delayed|not yet been delivered|this is (?:only )?a warning|"
    r"no action is required|will retry|delay(?:ed)? (?:warning|notification))\b",
    re.IGNORECASE,
)


def field_blocks(text: str) -> list[dict[str, str]]:
    """RFC 3464 field blocks of text, lower-cased names; first value of a name wins.

    Tolerant: a line that is not "Name: value" continues the previous field
    (bounces/sisimai-lhost-messagelabs-01.eml folds with "550-…" lines), and
    a second Final-Recipient without a blank line starts a new block.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            continue
        found = _FIELD.match(line)
        if found and not line[0].isspace():
            name = found.group(1).lower()
            if name == "final-recipient" and name in current:
                blocks.append(current)
                current = {}
            current.setdefault(name, found.group(2).strip())
            last = name
        elif last is not None:
            current[last] = f"{current[last]} {line.strip()}"
    if current:
        blocks.append(current)
    return blocks


def notice_only(text: str) -> str:
    """text cut where the returned copy of the original message begins."""
    found = _COPY_MARKER.search(text)
    return text[: found.start()] if found else text


def failed_addresses(text: str, exclude: frozenset[str]) -> list[tuple[str, str]]:
    """(address, diagnostic) for each recipient the notice says failed, in order."""
    notice = notice_only(text)
    lines = notice.splitlines()
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _ADDRESS_LINE.match(line)
        if match:
            address = match.group(1).lower()
            if _wanted(address, exclude):
                tail = _TAIL_NOISE.sub("", match.group(2) or "", count=1)
                found.setdefault(address, _explanation(tail, lines[index + 1: index + 8]))
    if not found:
        for match in _INLINE.finditer(notice):
            address = match.group(1).lower()
            if _wanted(address, exclude):
                found.setdefault(address, _sentence_around(notice, match.start(), match.end()))
    return list(found.items())


def original_recipients(text: str, exclude: frozenset[str]) -> list[str]:
    """The To addresses of the original as quoted after the copy marker (last resort)."""
    marker = _COPY_MARKER.search(text)
    if marker is None:
        return []
    for block in field_blocks(text[marker.start():]):
        if "to" in block:
            found = [a.lower() for a in re.findall(_ADDR, block["to"])]
            return [a for a in dict.fromkeys(found) if _wanted(a, exclude)]
    return []


def first_reply_line(text: str) -> str | None:
    """The first line of the notice that quotes an SMTP reply or an RFC 3463 status."""
    for line in notice_only(text).splitlines():
        if BASIC_CODE.search(line) or ENHANCED_STATUS.search(line):
            return line.strip()
    return None


def temporary(text: str) -> bool:
    """The notice says delivery is only delayed and still being tried."""
    return bool(_TEMPORARY.search(notice_only(text)))


def original_message_id_in_text(text: str, *, anywhere: bool = False) -> str | None:
    """A Message-ID quoted in text: after the copy marker, or anywhere when asked."""
    if not anywhere:
        marker = _COPY_MARKER.search(text)
        if marker is None:
            return None
        text = text[marker.start():]
    found = _QUOTED_MSGID.search(text)
    return found.group(1) if found else None


def _wanted(address: str, exclude: frozenset[str]) -> bool:
    local = address.partition("@")[0]
    return address not in exclude and not local.startswith(_DAEMONS)


def _explanation(tail: str, following: list[str]) -> str:
    """The reason given on the address's line and the indented lines under it."""
    parts = [tail.strip()] if tail.strip() else []
    for line in following:
        if not line.strip() or _ADDRESS_LINE.match(line):
            break
        parts.append(line.strip())
    return " ".join(parts)[:500]


def _sentence_around(text: str, start: int, end: int) -> str:
    left = max(text.rfind("\n\n", 0, start), 0)
    right = text.find("\n\n", end)
    return " ".join(text[left: right if right != -1 else len(text)].split())[:500]
