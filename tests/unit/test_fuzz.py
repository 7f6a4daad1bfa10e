"""Hostile and broken mail never crashes parse, classify or parse_bounce (Hypothesis).

Random bytes, and real corpus messages damaged the ways mail gets damaged in
the wild: cut short, MIME boundaries broken, headers repeated, charsets
swapped for wrong or unknown ones, line endings changed, NUL bytes. The only
exception allowed is NotMail from parse, for input that is not mail at all.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtix.core.bounce import BounceReport, parse_bounce, verp_token
from mailtix.core.classify import Disposition, Envelope, classify
from mailtix.core.message import ParsedMessage
from mailtix.core.parse import parse
from mailtix.errors import NotMail
from tests.conftest import CORPUS, need

ENV = Envelope(own_addresses=frozenset({"support@example.com"}))
KINDS = {"human", "auto_reply", "bounce", "list", "loop"}
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHARSETS = [b"utf-8", b"iso-8859-1", b"koi8-r", b"x-unknown", b"utf-7", b"gb18030", b"",
            b"iso-2022-jp", b"\"bogus charset\"", b"utf-16"]


def pipeline(raw: bytes) -> None:
    """parse → classify → parse_bounce; each must return a value of its type."""
    try:
        msg = parse(raw)
    except NotMail:
        return
    assert isinstance(msg, ParsedMessage)
    found = classify(msg, ENV)
    assert isinstance(found, Disposition) and found.kind in KINDS
    report = parse_bounce(msg, raw)
    assert report is None or isinstance(report, BounceReport)
    if report is not None:
        assert all(isinstance(r.address, str) and r.address for r in report.recipients)


@cache
def _seeds() -> tuple[Path, ...]:
    """Corpus messages small enough to mutate quickly, one of each kind of damage found there."""
    if not CORPUS.exists():
        return ()
    files = sorted(CORPUS.glob("*/*.eml"))
    return tuple(f for f in files if f.stat().st_size < 60_000)


# ------------------------------------------------------------- mutations
def truncate(raw: bytes, at: float) -> bytes:
    return raw[: int(len(raw) * at)]


def break_boundaries(raw: bytes, junk: bytes) -> bytes:
    """Boundary lines and the boundary parameter garbled."""
    raw = re.sub(rb"(?m)^--[^\r\n]{1,70}", lambda _: b"--" + junk, raw)
    return re.sub(rb"(?i)boundary=", lambda _: b"boundary=" + junk, raw, count=1)


def duplicate_headers(raw: bytes, times: int) -> bytes:
    head, sep, body = raw.partition(b"\n\n")
    return (head + b"\n") * times + head + sep + body


def swap_charsets(raw: bytes, charset: bytes) -> bytes:
    return re.sub(rb"(?i)charset=\"?[\w.:-]*\"?", lambda _: b"charset=" + charset, raw)


def flip(raw: bytes, position: float, byte: int) -> bytes:
    if not raw:
        return raw
    i = int((len(raw) - 1) * position)
    return raw[:i] + bytes([byte]) + raw[i + 1:]


MUTATIONS = st.one_of(
    st.builds(lambda at: lambda r: truncate(r, at), st.floats(0, 1)),
    st.builds(lambda j: lambda r: break_boundaries(r, j), st.binary(max_size=12)),
    st.builds(lambda n: lambda r: duplicate_headers(r, n), st.integers(1, 4)),
    st.builds(lambda c: lambda r: swap_charsets(r, c), st.sampled_from(CHARSETS)),
    st.builds(lambda p, b: lambda r: flip(r, p, b), st.floats(0, 1), st.integers(0, 255)),
    st.just(lambda r: r.replace(b"\r\n", b"\n").replace(b"\n", b"\r")),
    st.just(lambda r: r.replace(b"\n", b"\r\n")),
    st.just(lambda r: r.replace(b": ", b":\x00 ", 3)),
)


# ------------------------------------------------------------- properties
@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_give_a_value_or_not_mail(raw: bytes) -> None:
    """Arbitrary bytes: a message, or NotMail; classify and parse_bounce cope with either."""
    pipeline(raw)


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(["From", "Subject", "Content-Type", "Return-Path",
                                        "Auto-Submitted", "Precedence", "X-Failed-Recipients",
                                        "MIME-Version", "Message-ID"]),
                       st.text(max_size=60)), max_size=8),
    st.binary(max_size=600),
)
def test_random_headers_over_random_bodies(headers: list[tuple[str, str]], body: bytes) -> None:
    """Well-formed header lines with arbitrary values, over arbitrary bodies."""
    head = "".join(f"{name}: {' '.join(value.split())}\n" for name, value in headers)
    pipeline(head.encode("utf-8", "surrogateescape") + b"\n" + body)


@FUZZ
@given(st.data())
def test_mutated_corpus_messages_give_a_value(data: st.DataObject) -> None:
    """Real messages cut short, with broken boundaries, repeated headers, swapped charsets."""
    seeds = _seeds()
    need(bool(seeds), f"corpus not found at {CORPUS}")
    seed = data.draw(st.sampled_from(seeds), label="seed")
    raw = seed.read_bytes()
    for mutate in data.draw(st.lists(MUTATIONS, min_size=1, max_size=3), label="mutations"):
        raw = mutate(raw)
    pipeline(raw)


@FUZZ
@given(st.text(max_size=80), st.text(max_size=40))
def test_verp_token_never_raises(rcpt: str, template: str) -> None:
    """Any recipient against any template: a token of safe characters, or None."""
    token = verp_token(rcpt, template)
    assert token is None or re.fullmatch(r"[A-Za-z0-9._=-]+", token)
