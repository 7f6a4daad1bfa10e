"""Outlook's winmail.dat unpacked into its real attachments; a broken one kept as it came."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtix.core.message import ParsedAttachment
from mailtix.core.tnef import expand, is_tnef

_SIGNATURE = 0x223E9F78
_LVL_MESSAGE, _LVL_ATTACHMENT = 1, 2
_VERSION, _REND_DATA, _TITLE, _DATA = 0x9006, 0x9002, 0x8010, 0x800F


def _attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
    """One TNEF attribute: level, id, type, length, data, 16-bit checksum ([MS-OXTNEF] 2.1.3.1)."""
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack(
        "<H", sum(data) & 0xFFFF
    )


def tnef_blob(files: list[tuple[str, bytes]]) -> bytes:
    """A minimal TNEF stream carrying files, as Outlook writes attAttachTitle/attAttachData."""
    blob = struct.pack("<IH", _SIGNATURE, 0x0101)
    blob += _attribute(_LVL_MESSAGE, _VERSION, 0x0008, struct.pack("<I", 0x10000))
    for name, data in files:
        blob += _attribute(_LVL_ATTACHMENT, _REND_DATA, 0x0006, b"\x01\x00" + b"\x00" * 12)
        blob += _attribute(_LVL_ATTACHMENT, _TITLE, 0x0001, name.encode() + b"\x00")
        blob += _attribute(_LVL_ATTACHMENT, _DATA, 0x0006, data)
    return blob


def winmail(payload: bytes) -> ParsedAttachment:
    return ParsedAttachment("winmail.dat", "application/ms-tnef", payload)


def test_winmail_dat_gives_its_files() -> None:
    """Each file inside comes out with its name, a type from its extension, and its bytes."""
    blob = tnef_blob([("report.pdf", b"%PDF-1.4 report"), ("notes.txt", b"printer notes")])
    assert expand(winmail(blob)) == [
        ParsedAttachment("report.pdf", "application/pdf", b"%PDF-1.4 report"),
        ParsedAttachment("notes.txt", "text/plain", b"printer notes"),
    ]


def test_names_inside_the_blob_are_cleaned() -> None:
    """A path in the TNEF's own file name is dropped like any attachment name's."""
    (found,) = expand(winmail(tnef_blob([("..\\..\\windows\\evil.exe", b"MZ")])))
    assert found.filename == "evil.exe"


def test_tnef_is_recognised_by_type_or_by_name() -> None:
    """application/ms-tnef, application/vnd.ms-tnef, or a file called winmail.dat."""
    assert is_tnef(ParsedAttachment("x.bin", "application/vnd.ms-tnef", b""))
    assert is_tnef(ParsedAttachment("WINMAIL.DAT", "application/octet-stream", b""))
    assert not is_tnef(ParsedAttachment("report.pdf", "application/pdf", b""))


def test_other_attachments_pass_through() -> None:
    """expand() is safe to call on every attachment."""
    pdf = ParsedAttachment("report.pdf", "application/pdf", b"%PDF")
    assert expand(pdf) == [pdf]


def test_broken_tnef_is_kept_as_it_came() -> None:
    """A fake or cut TNEF body (tnef/redmine-*.eml) stays: mail is never lost over it."""
    for payload in (b"fixture\n", b"", tnef_blob([("a.txt", b"abc")])[:20]):
        att = winmail(payload)
        assert expand(att) == [att]


def test_tnef_without_files_is_kept() -> None:
    """A TNEF that only carries message properties (the Amazon WorkMail bounces) stays."""
    att = winmail(tnef_blob([]))
    assert expand(att) == [att]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_tnef_bytes_never_raise(tail: bytes) -> None:
    """Hostile bytes after a valid signature give files or the original, never an exception."""
    att = winmail(struct.pack("<IH", _SIGNATURE, 1) + tail)
    result = expand(att)
    assert result and all(isinstance(a, ParsedAttachment) for a in result)
