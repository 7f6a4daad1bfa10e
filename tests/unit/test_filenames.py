"""Safe attachment file names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtix.core.filenames import MAX_FILENAME_BYTES, extension_for, safe_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\carol\\Invoice 2024.docx", "Invoice 2024.docx"),
        (".htaccess", "htaccess"),
        ("...hidden.txt", "hidden.txt"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ("line\r\nbreak.txt", "line break.txt"),
        ("tab\there.txt", "tab here.txt"),
        ('what?*:"<>|.txt', "what_______.txt"),
        ("trailing dots...", "trailing dots"),
        ("nul\x00byte.pdf", "nulbyte.pdf"),
        ("CON.txt", "_CON.txt"),
        ("Résumé.pdf", "Résumé.pdf"),
    ],
)
def test_safe_filename_cleans_sender_supplied_names(name: str, expected: str) -> None:
    """Paths, controls, direction overrides, leading dots and reserved chars go."""
    assert safe_filename(name, "application/octet-stream", 1) == expected


@pytest.mark.parametrize(
    ("name", "ctype", "index", "expected"),
    [
        (None, "application/pdf", 1, "attachment-1.pdf"),
        ("", "image/jpeg", 2, "attachment-2.jpg"),
        ("   ", "message/rfc822", 3, "attachment-3.eml"),
        ("../", "text/x-unknown", 4, "attachment-4.txt"),
        ("....", "application/x-whatever", 5, "attachment-5.bin"),
    ],
)
def test_safe_filename_defaults_when_nothing_usable(
    name: str | None, ctype: str, index: int, expected: str
) -> None:
    """A missing or empty name becomes attachment-<n><ext> from the content type."""
    assert safe_filename(name, ctype, index) == expected


def test_long_names_are_cut_to_200_bytes_keeping_the_extension() -> None:
    """A 300-character multibyte name is cut on a character boundary, extension kept."""
    out = safe_filename("ж" * 300 + ".pdf", "application/pdf", 1)
    assert len(out.encode()) <= MAX_FILENAME_BYTES
    assert out.endswith(".pdf")
    assert out.startswith("жжж")


def test_extension_for_known_and_unknown_types() -> None:
    """Known types map to their usual extension; unknown text is .txt, the rest .bin."""
    assert extension_for("Application/PDF") == ".pdf"
    assert extension_for("text/x-log") == ".txt"
    assert extension_for("application/x-nope") == ".bin"


@given(st.one_of(st.none(), st.text()), st.integers(min_value=1, max_value=999))
def test_safe_filename_is_always_safe(name: str | None, index: int) -> None:
    """Any input yields a short, non-empty, single-component name with no controls."""
    out = safe_filename(name, "application/pdf", index)
    assert out
    assert "/" not in out and "\\" not in out
    assert not out.startswith(".")
    assert out not in (".", "..")
    assert len(out.encode()) <= MAX_FILENAME_BYTES
    assert not any(ord(c) < 32 or c == "\x7f" for c in out)
    assert out.splitlines() == [out]
