"""Unpack Outlook's winmail.dat (application/ms-tnef) into the files it carries, on tnefparse.

Outlook and Exchange wrap a message's attachments (and sometimes its rich
text body) in one TNEF blob that no other mail client can open; a helpdesk
that stores it as is leaves the agent with an opaque "winmail.dat". A TNEF
that cannot be read is kept as it came: mail is never lost over it
(corpus tnef/redmine-*.eml carry an 8-byte fake TNEF body).
"""

from __future__ import annotations

from tnefparse import TNEF

from mailtix.core.filenames import safe_filename
from mailtix.core.message import ParsedAttachment

_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_MAX_FILES = 200  # a TNEF names its attachments itself; bound what one blob can produce
# A small built-in table: `mimetypes` would read /etc/mime.types, and core/ reads no files.
_TYPES = {
    "pdf": "application/pdf", "doc": "application/msword", "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint", "rtf": "application/rtf", "txt": "text/plain",
    "htm": "text/html", "html": "text/html", "csv": "text/csv", "xml": "application/xml",
    "zip": "application/zip", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
    "gif": "image/gif", "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
    "eml": "message/rfc822", "msg": "application/vnd.ms-outlook", "ics": "text/calendar",
    "vcf": "text/vcard",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}


def is_tnef(att: ParsedAttachment) -> bool:
    """The attachment is a TNEF blob: by its type, or by Outlook's file name for it."""
    return att.content_type.lower() in _TNEF_TYPES or att.filename.lower() == "winmail.dat"


def expand(att: ParsedAttachment) -> list[ParsedAttachment]:
    """The files inside a TNEF attachment; [att] itself when it is not TNEF or cannot be read."""
    if not is_tnef(att):
        return [att]
    try:
        blob = TNEF(att.payload, do_checksum=False)
        files = _files(blob)
    # tnefparse reads hostile binary input with struct offsets and raises
    # whatever the bytes provoke (ValueError, IndexError, struct.error,
    # UnboundLocalError, UnicodeDecodeError, KeyError…): any failure means
    # "keep the blob", which is the one safe answer.
    except Exception:
        return [att]
    return files or [att]


def _files(blob: TNEF) -> list[ParsedAttachment]:
    files: list[ParsedAttachment] = []
    for index, item in enumerate(blob.attachments[:_MAX_FILES], start=1):
        data = item.data if isinstance(item.data, bytes) else b""
        if not data:
            continue
        name = _name(item)
        content_type = _TYPES.get(name.rpartition(".")[2].lower(), "application/octet-stream")
        filename = safe_filename(name or None, content_type, index)
        files.append(ParsedAttachment(filename, content_type, data))
    html = blob.htmlbody
    if not files and html:
        # A TNEF that only carries the HTML body: keep that body as a file.
        data = html if isinstance(html, bytes) else str(html).encode("utf-8")
        files.append(ParsedAttachment("message.html", "text/html", data))
    return files


def _name(item: object) -> str:
    """The attachment's long file name, else its 8.3 name, else ""."""
    for read in (getattr(item, "long_filename", None), lambda: getattr(item, "name", "")):
        try:
            name = read() if callable(read) else ""
        except (UnicodeDecodeError, AttributeError, TypeError):
            continue
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(name, str) and name.strip("\x00 "):
            return name.strip("\x00 ")
    return ""

