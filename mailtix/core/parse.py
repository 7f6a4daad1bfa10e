"""Parse raw RFC 5322 bytes into a ParsedMessage, whatever state the mail is in.

The MIME tree comes from the stdlib `email` package with policy compat32,
which never raises on malformed input and costs about a tenth of the default
policy (../shared/INFRA.md). Address headers and dates go through
mail-parser's hardened readers (structural recovery with diagnostics for
broken address lists; RFC 5322 §3.3/§4.3 obsolete date forms). Everything a
sender can get wrong is decoded with a fallback and recorded as a defect;
only input that is not mail at all raises NotMail.
"""

from __future__ import annotations

import binascii
import codecs
import re
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.utils import parseaddr, parsedate_to_datetime

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from mailtix.core import tnef
from mailtix.core.filenames import safe_filename
from mailtix.core.htmltext import html_to_text
from mailtix.core.message import ParsedAttachment, ParsedMessage
from mailtix.errors import NotMail

try:  # optional: without it, latin-1 still decodes every byte
    from charset_normalizer import from_bytes as _detect_charset
except ImportError:  # pragma: no cover - it ships with our dependencies
    _detect_charset = None

# Leading bytes of files that are sometimes fed to a mail gateway by mistake.
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Outlook .msg (OLE2) file"),
    (b"%PDF-", "a PDF file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)
_BOM = b"\xef\xbb\xbf"
_MAX_LINE = 998  # RFC 5322 §2.1.1, without the CRLF
_HEADER_END = re.compile(rb"\r?\n\r?\n|\r\r")
_OBS_FIELD = re.compile(rb"(?:\A|(?<=[\r\n]))([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_MSGID = re.compile(r"<[^<>\s]+>")
_BARE_MSGID = re.compile(r"[^<>\s@]+@[^<>\s@]+")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(
    rf"\s*(?:(?P<name>[A-Za-z0-9' _-]*?)\s*<(?P<angle>{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9.-]+)>"
    rf"|(?P<bare>{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9.-]+))\s*(?:,|$)"
)
# Blank lines around a body part; leading indentation and "-- " signature lines stay.
_BLANK_EDGES = re.compile(r"^(?:[ \t]*\n)+|\s+$")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_ADDRESS_HEADERS = ("from", "to", "cc", "reply-to")
_MAX_DEPTH = 40  # MIME nesting beyond this is an attack, not a message
_MAX_REFERENCES = 100  # keep the newest; older ones add nothing to threading
_MAX_DEFECTS = 50
_MB = 1024 * 1024


def parse(
    raw: bytes, *, max_attachment_bytes: int | None = None, max_attachments: int | None = None
) -> ParsedMessage:
    """Decode raw into a ParsedMessage; raise NotMail only when raw is not mail at all."""
    defects: list[str] = []
    body = _start_of_headers(raw, defects)
    msg = _parse_tree(body, defects)
    if not msg.keys():
        raise NotMail("no header fields: this is not an RFC 5322 message")
    _note_raw_defects(raw, defects)
    raw_headers = _raw_index(msg)
    headers = {k: tuple(map(decode_header_value, v)) for k, v in raw_headers.items()}
    addresses = {n: _addresses(n, raw_headers.get(n, []), defects) for n in _ADDRESS_HEADERS}
    from_name, from_addr = addresses["from"][0] if addresses["from"] else ("", "")
    if len(addresses["from"]) > 1:
        defects.append("more than one From address; the first is used")
    walk = _Walker(max_attachment_bytes, max_attachments, defects)
    walk.run(msg)
    message_id = _first_id(headers.get("message-id", ()))
    if message_id is None:
        defects.append("no Message-ID")
    if not from_addr:
        defects.append("no usable From address")
    return ParsedMessage(
        message_id=message_id,
        subject=_first(headers, "subject").strip(),
        from_addr=from_addr,
        from_name=from_name,
        to=_emails(addresses["to"]),
        cc=_emails(addresses["cc"]),
        reply_to=_emails(addresses["reply-to"]),
        in_reply_to=_ids(headers.get("in-reply-to", ())),
        references=_ids(headers.get("references", ()))[-_MAX_REFERENCES:],
        date=_date(raw_headers.get("date", []), defects),
        text=walk.text(),
        html=walk.html(),
        attachments=tuple(walk.attachments),
        headers=headers,
        content_type=_content_type(msg),
        defects=_capped(defects),
    )


# ------------------------------------------------------------------ input
def _start_of_headers(raw: bytes, defects: list[str]) -> bytes:
    """raw without a BOM or blank lines before the header; NotMail for non-mail input."""
    if not raw.strip():
        raise NotMail("empty input")
    for magic, what in _BINARY_MAGIC:
        if raw.startswith(magic):
            raise NotMail(f"{what}, not an RFC 5322 message")
    body = raw.removeprefix(_BOM)
    stripped = body.lstrip(b"\r\n")
    if len(stripped) != len(body):
        defects.append("blank lines before the header, ignored")
    return stripped


def _obsolete_header_syntax(data: bytes, defects: list[str]) -> bytes:
    """data with "Name  : value" header lines (RFC 5322 §4.5 obs-optional) made "Name: value".

    The stdlib stops reading the header at such a line (corpus
    malformed/mikelmail-rfc2822-example13.eml), losing every field after it.
    """
    end = _HEADER_END.search(data)
    head = data[: end.start()] if end else data
    if not _OBS_FIELD.search(head):
        return data
    defects.append("obsolete header syntax: space before the colon (RFC 5322 §4.5)")
    return _OBS_FIELD.sub(rb"\1:", head) + data[len(head) :]


def _parse_tree(data: bytes, defects: list[str]) -> Message:
    """The compat32 MIME tree; headers only when the nesting is too deep to parse."""
    data = _obsolete_header_syntax(data, defects)
    try:
        return BytesParser(policy=compat32).parsebytes(data)
    except RecursionError:
        # The stdlib parser recurses once per multipart level (CPython
        # issue gh-102993); a crafted message can exhaust the stack.
        defects.append("MIME structure nested too deeply; body not parsed")
        return BytesHeaderParser(policy=compat32).parsebytes(data)


def _note_raw_defects(raw: bytes, defects: list[str]) -> None:
    if b"\x00" in raw:
        defects.append("NUL bytes in the message")
    # splitlines() is C-speed on CR, LF and CRLF alike; a regex scan was 10x slower.
    if len(raw) > _MAX_LINE and max(map(len, raw.splitlines())) > _MAX_LINE:
        defects.append("line longer than 998 octets (RFC 5322 §2.1.1)")
    if b"\r" in raw and b"\n" not in raw:
        defects.append("CR-only line endings")


def _capped(defects: list[str]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(defects))
    if len(unique) > _MAX_DEFECTS:
        rest = len(unique) - _MAX_DEFECTS
        unique = [*unique[:_MAX_DEFECTS], f"… and {rest} more defects"]
    return tuple(unique)


# ---------------------------------------------------------------- headers
def _raw_index(msg: Message) -> dict[str, list[str]]:
    """Lower-cased name → raw values, in order: one pass, linear in the header count.

    Raw values, because compat32's get() wraps 8-bit ones in Header objects.
    """
    out: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        out.setdefault(name.strip().lower(), []).append(str(value))
    return out


def _raw_values(msg: Message, name: str) -> list[str]:
    """The undecoded values of header name in msg."""
    return _raw_index(msg).get(name, [])


def _first(headers: dict[str, tuple[str, ...]], name: str) -> str:
    values = headers.get(name)
    return values[0] if values else ""


def _addresses(name: str, raws: list[str], defects: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs of every value raws of header name."""
    found: list[tuple[str, str]] = []
    for raw in raws:
        value = decode_header_value(raw, encoded_words=False)
        pairs = _simple_addresses(value)
        if pairs is None:
            diagnostics: list[dict[str, object]] = []
            pairs = get_addresses(value, defects=diagnostics, decode_names=True)
            defects += [f"{name.title()}: {d.get('reason')}" for d in diagnostics]
        pairs = [(n, a) for n, a in pairs if a]
        if not pairs and name == "from":
            pairs = _lenient_from(value, defects)
        found += [(decode_header_value(n), scrub(a).strip().lower()) for n, a in pairs]
    return found


def _simple_addresses(value: str) -> list[tuple[str, str]] | None:
    """The common plain forms ("Name <a@b>", "a@b", lists of them) without the full parser.

    mail-parser's structural parser is a third of parse()'s time on ordinary
    mail; values it would read identically take this path, anything else
    (quotes, comments, encoded words, groups) returns None.
    """
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(value)
    while pos < end:
        m = _SIMPLE_ADDRESS.match(value, pos)
        if m is None:
            return None
        addr = m.group("angle") or m.group("bare")
        pairs.append((" ".join((m.group("name") or "").split()), addr))
        pos = m.end()
    return pairs


def _lenient_from(value: str, defects: list[str]) -> list[tuple[str, str]]:
    """The stdlib's forgiving reading of a From that the strict parser refused."""
    name, addr = parseaddr(value)
    if "@" in addr:
        defects.append("From: recovered from a malformed address")
        return [(name, addr)]
    return []


def _emails(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addr for _, addr in pairs))


def _ids(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every "<id>" named in values, in order, without repeats."""
    found: list[str] = []
    for value in values:
        ids = _MSGID.findall(value)
        if not ids:  # some clients drop the angle brackets
            ids = [f"<{m}>" for m in _BARE_MSGID.findall(value)]
        found += ids
    return tuple(dict.fromkeys(found))


def _first_id(values: tuple[str, ...]) -> str | None:
    ids = _ids(values[:1])
    return ids[0] if ids else None


def _date(raws: list[str], defects: list[str]) -> datetime | None:
    """The Date header as an aware datetime (UTC when it names no zone), or None."""
    if not raws:
        defects.append("no Date")
        return None
    value = decode_header_value(raws[0], encoded_words=False).strip()
    try:
        result = parse_mail_date(value).value
        if result is not None:
            return result
        return _lenient_date(value, defects)
    except (ValueError, OverflowError):
        defects.append(f"unreadable Date: {value[:80]}")
        return None


def _lenient_date(value: str, defects: list[str]) -> datetime | None:
    """Dates without a zone or in near-RFC forms, read by the stdlib."""
    try:
        parsed = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        defects.append(f"unreadable Date: {value[:80]}")
        return None
    if parsed.tzinfo is None:
        defects.append("Date has no time zone; UTC assumed")
        return parsed.replace(tzinfo=UTC)
    return parsed


# ------------------------------------------------------------------- body
class _Walker:
    """Walks the MIME tree once, collecting body text, HTML and attachments."""

    def __init__(self, max_bytes: int | None, max_count: int | None, defects: list[str]) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.defects = defects
        self.plain: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self._seen = 0  # attachments met, kept or not: numbers default names
        self._names: set[str] = set()

    def run(self, root: Message) -> None:
        # An explicit stack, not Message.walk(): walk() recurses per level.
        stack: list[tuple[Message, int]] = [(root, 0)]
        while stack:
            part, depth = stack.pop()
            self._note_defects(part)
            if depth > _MAX_DEPTH:
                self.defects.append(f"MIME parts nested deeper than {_MAX_DEPTH} levels ignored")
                continue
            children = self._visit(part)
            stack.extend((child, depth + 1) for child in reversed(children))

    def _note_defects(self, part: Message) -> None:
        for defect in part.defects:
            self.defects.append(f"{type(defect).__name__} in {_content_type(part)}")

    def _visit(self, part: Message) -> list[Message]:
        """Handle one part; return the children to walk."""
        ctype = _content_type(part)
        if ctype.startswith("message/"):
            self._attach(part, _message_bytes(part, self.defects), ctype, _message_name(part))
            return []
        if part.is_multipart():
            payload = part.get_payload()
            return (
                [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
            )
        if ctype.startswith("multipart/"):
            # Boundary missing or wrong: compat32 keeps the whole body as one string.
            self.defects.append(f"{ctype} without a usable boundary; body kept as text")
            self.plain.append(self._text_of(part))
            return []
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            (self.htmls if ctype == "text/html" else self.plain).append(self._text_of(part))
            return []
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        # Outlook's winmail.dat (application/ms-tnef) hides the real files inside;
        # expand() gives them back, or the part itself when it is not TNEF or broken.
        for inner in tnef.expand(ParsedAttachment(filename or "", ctype, data)):
            self._attach(part, inner.payload, inner.content_type, inner.filename or filename)
        return []

    def _text_of(self, part: Message) -> str:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        text, defect = decode_bytes(data, part.get_content_charset())
        if defect:
            self.defects.append(defect)
        if "\x00" in text:
            self.defects.append("NUL bytes removed from the text")
        return scrub(text).replace("\r\n", "\n").replace("\r", "\n")

    def _attach(self, part: Message, payload: bytes, ctype: str, name: str | None) -> None:
        self._seen += 1
        filename = self._unique(safe_filename(_decoded_name(name), ctype, self._seen))
        if self.max_count is not None and len(self.attachments) >= self.max_count:
            self.defects.append(
                f"attachment {filename} not kept: more than {self.max_count} attachments"
            )
            return
        if self.max_bytes is not None and len(payload) > self.max_bytes:
            self.defects.append(
                f"attachment {filename} ({_size(len(payload))}) over the "
                f"{_size(self.max_bytes)} limit, not kept"
            )
            return
        self.attachments.append(ParsedAttachment(filename, ctype, payload))

    def _unique(self, name: str) -> str:
        """name, or "name (2).ext" when another attachment of this message has it."""
        stem, dot, ext = name.rpartition(".")
        if not stem:
            stem, dot, ext = name, "", ""
        candidate, n = name, 1
        while candidate.lower() in self._names:
            n += 1
            candidate = f"{stem} ({n}){dot}{ext}"
        self._names.add(candidate.lower())
        return candidate

    def text(self) -> str:
        """The text body: the text/plain parts, else the HTML converted."""
        text = "\n\n".join(_BLANK_EDGES.sub("", t) for t in self.plain if t.strip())
        if not text and self.htmls:
            text = html_to_text(self.html() or "")
        return text

    def html(self) -> str | None:
        return "\n".join(self.htmls) if self.htmls else None


def _content_type(part: Message) -> str:
    """The part's type; text/plain when it is not a valid type/subtype (RFC 2045 §5.2)."""
    ctype = part.get_content_type()
    return ctype if _MEDIA_TYPE.fullmatch(ctype) else "text/plain"


def _decoded_name(name: str | None) -> str | None:
    # Outlook sends RFC 2047 words inside filename="…" (RFC 2047 §5 forbids it).
    return decode_header_value(name) if name else None


def _message_bytes(part: Message, defects: list[str]) -> bytes:
    """The bytes of an attached message (message/rfc822) or report block (delivery-status)."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""
    out: list[bytes] = []
    for inner in payload:
        if isinstance(inner, Message) and not _serialise(inner, out, 0):
            defects.append(f"attached {_content_type(part)} nested too deeply; cut short")
            break
    return b"".join(out)


def _serialise(msg: Message, out: list[bytes], depth: int) -> bool:
    """Append msg's bytes to out as parsed: raw header lines, raw bodies; False if too deep.

    Message.as_bytes() re-folds every header through email.header.Header,
    which was half of parse()'s time on bounces; compat32 keeps each raw
    value with its own folding, so writing them back is enough.
    """
    if depth > _MAX_DEPTH:
        return False
    unixfrom = msg.get_unixfrom()
    if unixfrom:
        out.append(_wire(unixfrom) + b"\n")
    out += [_wire(f"{name}: {value}") + b"\n" for name, value in msg.raw_items()]
    out.append(b"\n")
    payload = msg.get_payload()
    if not isinstance(payload, list):
        out.append(_wire(str(payload or "")))
        return True
    boundary = msg.get_boundary() if msg.get_content_maintype() == "multipart" else None
    if boundary is None:  # message/rfc822 or delivery-status blocks: parts back to back
        return all(_serialise(p, out, depth + 1) for p in payload if isinstance(p, Message))
    delimiter = _wire(f"--{boundary}")
    if msg.preamble:
        out.append(_wire(msg.preamble) + b"\n")
    for inner in payload:
        out.append(delimiter + b"\n")
        if isinstance(inner, Message) and not _serialise(inner, out, depth + 1):
            return False
        out.append(b"\n")
    out.append(delimiter + b"--\n")
    if msg.epilogue:
        out.append(_wire(msg.epilogue))
    return True


def _wire(text: str) -> bytes:
    # compat32 holds undecoded 8-bit bytes as surrogate escapes: this restores them.
    return text.encode("utf-8", "surrogateescape")


def _message_name(part: Message) -> str | None:
    """The file name of an attached message: its own, else its subject plus ".eml"."""
    name = part.get_filename()
    if name:
        return name
    payload = part.get_payload()
    if _content_type(part) in ("message/rfc822", "message/global") and payload:
        inner = payload[0] if isinstance(payload, list) else None
        subjects = _raw_values(inner, "subject") if isinstance(inner, Message) else []
        if subjects and subjects[0].strip():
            return decode_header_value(subjects[0]).strip()[:150] + ".eml"
    return None


def _size(n: int) -> str:
    if n >= _MB:
        mb = n / _MB
        return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


# --------------------------------------------------------------- charsets
# Labels mapped to the encoding senders really use: supersets that decode
# what the narrower label fails on (WHATWG Encoding Standard §4.2 maps
# iso-8859-1 to windows-1252 for the same reason), and aliases Python lacks.
_CHARSET_ALIASES = {
    "unicode-1-1-utf-7": "utf-7",  # Exchange DSNs, corpus bounces/bounceparser-warning-1.eml
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "windows-874": "cp874",
    # RFC 1556 Hebrew/Arabic "visual/logical order" labels: same bytes as the base set.
    "iso-8859-8-i": "iso8859_8",
    "iso-8859-8-e": "iso8859_8",
    "iso-8859-6-i": "iso8859_6",
    "iso-8859-6-e": "iso8859_6",
}
# Labels that say "no idea": treat as undeclared.
_UNDECLARED = frozenset({"", "unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default"})
# Python text codecs that are no mail charset and would interpret the bytes as code.
_NOT_CHARSETS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "punycode", "idna", "undefined", "mbcs", "oem"}
)
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HEADER_UNSAFE = {0: None, 10: " ", 13: " "}


def _codec(label: str) -> str | None:
    """The Python codec for a charset label, or None when unknown or unsafe."""
    if label in _UNDECLARED:
        return None
    if label.startswith("x-mac-"):  # Apple's labels, e.g. x-mac-cyrillic (corpus issue230)
        label = "mac-" + label.removeprefix("x-mac-")
    try:
        name = codecs.lookup(_CHARSET_ALIASES.get(label, label)).name
    except (LookupError, ValueError, TypeError):
        return None
    return None if name in _NOT_CHARSETS else name


def _label(declared: str | None) -> str:
    # Seen in the wild: charset="charset=us-ascii" (corpus charsets/enmime-*bad-charset*).
    label = (declared or "").strip().strip("\"'").lower()
    return label.removeprefix("charset=").strip("\"'")


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """data as text: declared charset, else utf-8, detected, latin-1; plus a defect or None."""
    label = _label(declared)
    codec = _codec(label)
    if codec is not None:
        try:
            return data.decode(codec), None
        except UnicodeError:  # some codecs raise the bare base class
            pass
    text, used = _fallback_decode(data)
    if codec is not None:
        return text, f"text is not valid {label}; decoded as {used}"
    if label not in _UNDECLARED:
        return text, f"unknown charset {label!r}; decoded as {used}"
    return text, None if used in ("ascii", "utf-8") else f"undeclared 8-bit text; decoded as {used}"


def _fallback_decode(data: bytes) -> tuple[str, str]:
    """Decode data without a trustworthy label; never raises. Returns (text, how)."""
    if data.isascii():
        return data.decode("ascii"), "ascii"
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    if not bad:
        return text, "utf-8"
    # Mostly-valid UTF-8 with a few broken bytes (a truncated character, corpus
    # multipart/redmine-invalid_utf8.eml) reads best as UTF-8 with the breaks
    # marked; legacy 8-bit text has no valid multibyte sequences at all.
    valid = sum(1 for ch in text if ord(ch) > 127) - text.count("\ufffd")
    if valid >= bad:
        return text, f"utf-8 with {bad} invalid bytes replaced"
    detected = _detect(data)
    if detected is not None:
        return detected
    return data.decode("latin-1"), "latin-1"  # every byte is a latin-1 character


def _detect(data: bytes) -> tuple[str, str] | None:
    """charset-normalizer's reading of data, preferring windows-1252 on a tie."""
    if _detect_charset is None:
        return None
    # UTF-16/32 without a BOM are never sent as undeclared mail text.
    found = [m for m in _detect_charset(data) if not m.encoding.startswith(("utf_16", "utf_32"))]
    if not found:
        return None
    best = found[0]
    # Ties are common on short Western text (cp1258 vs cp1252 for Italian in
    # corpus charsets/mailparser-mail_test_2.eml); windows-1252 is by far the
    # most used legacy charset, so it wins an equal-chaos tie.
    tie = next((m for m in found if m.encoding == "cp1252" and m.chaos <= best.chaos), None)
    chosen = tie or best
    return str(chosen), chosen.encoding


def scrub(text: str) -> str:
    """text without NUL and lone surrogates (neither can be stored in PostgreSQL text)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    return text


def decode_header_value(value: str, *, encoded_words: bool = True) -> str:
    """A raw header value unfolded, 8-bit bytes and RFC 2047 words decoded, on one line."""
    text = value
    if not text.isascii():
        # compat32 keeps undeclared 8-bit header bytes as surrogate escapes
        # (RFC 6532 allows UTF-8; older mailers send their local charset).
        raw = text.encode("utf-8", "surrogateescape")
        text = decode_bytes(raw, None)[0]
    if "\n" in text or "\r" in text:
        text = _LINE_BREAK.sub("", text)  # RFC 5322 §2.2.3 unfolding
    if encoded_words and "=?" in text:
        text = _decode_encoded_words(text)
    text = scrub(text)
    # A decoded word may hold CR/LF: never let it reach a header we write.
    return text.translate(_HEADER_UNSAFE) if "\n" in text or "\r" in text else text


def _decode_encoded_words(text: str) -> str:
    """RFC 2047 decoding that joins adjacent words of one charset before decoding.

    Clients split multibyte characters across words (RFC 2047 §5 forbids it;
    corpus charsets/ has examples), so bytes are pooled per run, and the
    whitespace between two encoded words is dropped (RFC 2047 §6.2).
    """
    out: list[str] = []
    run: list[bytes] = []
    run_charset = ""
    pos = 0

    def flush() -> None:
        if run:
            out.append(decode_bytes(b"".join(run), run_charset)[0])
            run.clear()

    for m in _ENCODED_WORD.finditer(text):
        gap = text[pos : m.start()]
        data = _encoded_word_bytes(m.group(2), m.group(3))
        if data is None:  # not decodable: keep it literally
            flush()
            out.append(gap + m.group(0))
        else:
            if gap and not (run and gap.isspace()):
                flush()
                out.append(gap)
            charset = m.group(1).lower()
            if charset != run_charset:
                flush()
                run_charset = charset
            run.append(data)
        pos = m.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def _encoded_word_bytes(encoding: str, encoded: str) -> bytes | None:
    try:
        if encoding in "bB":
            padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
            return binascii.a2b_base64(padded.encode("ascii"))
        return binascii.a2b_qp(encoded.encode("utf-8"), header=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
