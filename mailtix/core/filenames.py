"""Attachment file names that are safe to show, to store and to offer for download.

A sender chooses the name, so it may hold a path ("../../etc/passwd",
"C:\\\\Users\\\\x.doc"), control characters, a right-to-left override that
makes "gpj.exe" read as "exe.jpg", a leading dot that hides the file, or
hundreds of bytes. None of that survives here.
"""

from __future__ import annotations

import unicodedata

# Most file systems cap a name at 255 bytes; keep room for a de-duplicating suffix.
MAX_FILENAME_BYTES = 200
_MAX_EXTENSION_BYTES = 16
# Reserved on Windows file systems and awkward in URLs and shells.
_FORBIDDEN = frozenset('<>:"|?*')
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)
# A fixed table rather than `mimetypes`, which reads system files and so
# differs between machines (and core/ reads no files).
_EXTENSIONS: dict[str, str] = {
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/gzip": ".gz",
    "application/x-7z-compressed": ".7z",
    "application/vnd.rar": ".rar",
    "application/json": ".json",
    "application/xml": ".xml",
    "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/rtf": ".rtf",
    "application/ms-tnef": ".dat",
    "application/vnd.ms-tnef": ".dat",
    "application/pgp-signature": ".asc",
    "application/pgp-encrypted": ".asc",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m",
    "application/x-pkcs7-mime": ".p7m",
    "application/octet-stream": ".bin",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/heic": ".heic",
    "image/svg+xml": ".svg",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "video/mp4": ".mp4",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/csv": ".csv",
    "text/calendar": ".ics",
    "text/vcard": ".vcf",
    "text/x-vcard": ".vcf",
    "text/rfc822-headers": ".txt",
    "text/enriched": ".txt",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/global-delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "message/feedback-report": ".txt",
}


def extension_for(content_type: str) -> str:
    """The usual file extension of content_type (".bin" when unknown)."""
    ctype = content_type.strip().lower()
    if ctype in _EXTENSIONS:
        return _EXTENSIONS[ctype]
    return ".txt" if ctype.startswith("text/") else ".bin"


def _visible(ch: str) -> str:
    if ch.isspace():  # tabs and folded line breaks read as spaces
        return " "
    # Cc: controls (NUL, CR, LF…); Cf: format chars such as U+202E RIGHT-TO-LEFT
    # OVERRIDE and zero-width spaces; Zl/Zp: line and paragraph separators.
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
        return ""
    return "_" if ch in _FORBIDDEN else ch


def _truncate(name: str, limit: int) -> str:
    """name cut to at most limit UTF-8 bytes, keeping its extension when it is short."""
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = dot + ext if stem and len((dot + ext).encode()) <= _MAX_EXTENSION_BYTES else ""
    stem = name[: len(name) - len(suffix)]
    budget = limit - len(suffix.encode())
    # Cut on a character boundary: drop a partial trailing UTF-8 sequence.
    cut = stem.encode()[:budget].decode("utf-8", "ignore").rstrip(" .")
    return cut + suffix


def safe_filename(name: str | None, content_type: str, index: int) -> str:
    """A file name without path, control chars or leading dots, ≤ 200 UTF-8 bytes.

    When name gives nothing usable, "attachment-<index><ext>" with the
    extension of content_type, e.g. "attachment-1.pdf".
    """
    text = unicodedata.normalize("NFC", name or "")
    # Both separators: Windows clients send "C:\\path\\file.doc" (RFC 2183 §2.3
    # says to ignore any directory path).
    base = text.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(_visible(ch) for ch in base)
    base = " ".join(base.split())
    base = base.lstrip(". ").rstrip(". ")  # hidden files; Windows drops trailing dots
    if not base:
        return f"attachment-{index}{extension_for(content_type)}"
    if base.split(".", 1)[0].lower() in _WINDOWS_RESERVED:
        base = "_" + base
    return _truncate(base, MAX_FILENAME_BYTES)
