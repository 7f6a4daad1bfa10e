"""The shared corpus of real mail as a test: 783 messages from other projects' suites.

Every message goes through parse → classify → parse_bounce (and, when the
ingest service is importable, through the real pipeline on a SQLite file).
Where MANIFEST.tsv states what the source project expects, we compare, print
the hit rate per category and check, and assert floors we can defend. The
files are read in place (../shared/corpus); none is copied into the repository.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mailtix.core.bounce import BounceReport, parse_bounce
from mailtix.core.classify import Disposition, Envelope, classify
from mailtix.core.message import ParsedMessage
from mailtix.core.parse import parse
from mailtix.core.quotes import strip_quoted
from mailtix.errors import NotMail
from tests.conftest import CORPUS, need

ENV = Envelope(own_addresses=frozenset({"support@example.com"}))
AUTOMATIC = ("auto_reply", "bounce", "list", "loop")


@dataclass(frozen=True)
class Case:
    """One corpus file and what its source project expects of it."""

    path: str
    category: str
    expected: dict[str, Any]

    @property
    def file(self) -> Path:
        return CORPUS / self.path


@dataclass
class Outcome:
    """What our code made of one message."""

    parsed: ParsedMessage | None = None
    not_mail: str | None = None
    disposition: Disposition | None = None
    bounce: BounceReport | None = None


@dataclass
class Scoreboard:
    """Hits and totals per (category, check), printed at the end of the module."""

    counts: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    misses: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)

    def score(self, category: str, check: str, hit: bool, path: str = "") -> None:
        cell = self.counts[(category, check)]
        cell[0] += int(hit)
        cell[1] += 1
        if not hit and path:
            self.misses[check].append(path)

    def rate(self, check: str, categories: tuple[str, ...] | None = None) -> tuple[int, int]:
        hits = total = 0
        for (category, name), (h, t) in self.counts.items():
            if name == check and (categories is None or category in categories):
                hits, total = hits + h, total + t
        return hits, total

    def lines(self) -> list[str]:
        out = ["", "corpus hit rates (../shared/corpus, expectations from MANIFEST.tsv):"]
        for (category, check), (hits, total) in sorted(self.counts.items()):
            rate = 100 * hits / total
            out.append(f"  {category:<15} {check:<26} {hits:>4}/{total:<4} {rate:5.1f}%")
        out += [f"  {note}" for note in self.notes]
        for check, paths in sorted(self.misses.items()):
            out.append(f"  misses, {check}: {', '.join(Path(p).name for p in paths[:12])}"
                       + (f" … (+{len(paths) - 12})" if len(paths) > 12 else ""))
        return out


@cache
def _cases() -> tuple[Case, ...]:
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return tuple(
        Case(r["path"], r["category"], json.loads(r["expected"]) if r["expected"] else {})
        for r in rows
    )


def _run(case: Case) -> Outcome:
    raw = case.file.read_bytes()
    try:
        parsed = parse(raw)
    except NotMail as err:
        return Outcome(not_mail=str(err))
    disposition = classify(parsed, ENV)
    report = parse_bounce(parsed, raw) if disposition.kind == "bounce" else None
    return Outcome(parsed, None, disposition, report)


@pytest.fixture(scope="module")
def cases() -> tuple[Case, ...]:
    need(CORPUS.exists(), f"corpus not found at {CORPUS}")
    return _cases()


@pytest.fixture(scope="module")
def outcomes(cases: tuple[Case, ...]) -> dict[str, Outcome]:
    """Every .eml of the corpus, parsed, classified and (bounces) read, once for the module."""
    return {c.path: _run(c) for c in cases if c.path.endswith(".eml")}


@pytest.fixture(scope="module")
def board(request: pytest.FixtureRequest) -> Iterator[Scoreboard]:
    """Collects the hit rates and prints them at the end, whatever -s or -q say."""
    scores = Scoreboard()
    yield scores
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not scores.counts:
        return
    with capture.global_and_fixture_disabled():
        for line in scores.lines():
            reporter.write_line(line)


# ------------------------------------------------------------ everything
def test_every_message_parses_or_is_refused_as_not_mail(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome]
) -> None:
    """No exception escapes; only malformed/ files that are not RFC 5322 at all are refused."""
    refused = sorted(path for path, o in outcomes.items() if o.not_mail is not None)
    assert all(path.startswith("malformed/") for path in refused), refused
    assert len(refused) <= 3, refused  # the OLE .msg, a headerless blob, a text file
    assert len(outcomes) == sum(1 for c in cases if c.path.endswith(".eml"))


# --------------------------------------------------------- classification
def test_every_autoreply_fixture_is_classified_automatic(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """autoreply/: vacation, RFC 3834, challenge/response; none may get an answer."""
    for case in cases:
        if case.category == "autoreply":
            d = outcomes[case.path].disposition
            automatic = d is not None and d.kind in AUTOMATIC
            board.score(case.category, "automatic", automatic, case.path)
    hits, total = board.rate("automatic", ("autoreply",))
    assert total == 16 and hits == total


def test_no_plain_or_html_fixture_is_taken_for_an_auto_reply_or_bounce(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """plain/ and html/ are people's mail; the only non-human ones are bulk mail.

    Two carry bulk markers that SPEC §6 forbids answering: a GTUBE spam test
    with "Precedence: junk" (plain/mailparser-mail_test_16.eml) and a
    Mailchimp newsletter with List-Id (html/mailparser-mail_test_13.eml).
    Those are "list", which opens a ticket without an acknowledgement; never
    an auto-reply or a bounce.
    """
    for case in cases:
        if case.category in ("plain", "html"):
            d = outcomes[case.path].disposition
            assert d is not None
            board.score(case.category, "not auto-reply/bounce", d.kind in ("human", "list"),
                        case.path)
            board.score(case.category, "human", d.kind == "human", case.path)
    hits, total = board.rate("not auto-reply/bounce", ("plain", "html"))
    assert hits == total
    humans, _ = board.rate("human", ("plain", "html"))
    assert humans >= total - 2


def _bounce_expectation_met(expected: dict[str, Any], o: Outcome) -> bool:
    kind = o.disposition.kind if o.disposition else None
    if expected["bounce"]:
        return kind == "bounce"
    if expected.get("delay_warning") and kind == "bounce":
        return o.bounce is None or not o.bounce.hard  # a delay is a DSN, but nothing failed
    return kind != "bounce"


def test_bounce_detection_agrees_with_the_sources(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """Where sisimai, BounceParser and others say "bounce" or "not a bounce", so do we.

    Known misses: three BounceParser spam samples it counts as bounces
    (bounces/bounceparser-spam-*.eml: ordinary spam, no failure notice), two
    fml mailing-list notices (list), and two Verizon/James notices whose
    only signal is a "post_master" sender (auto_reply, still never answered).
    """
    for case in cases:
        if "bounce" in case.expected and case.path in outcomes:
            o = outcomes[case.path]
            if o.disposition is not None:
                met = _bounce_expectation_met(case.expected, o)
                board.score(case.category, "bounce yes/no", met, case.path)
    hits, total = board.rate("bounce yes/no")
    assert total >= 300
    assert hits / total >= 0.97


def test_feedback_reports_and_forwarded_bounces_are_not_bounces(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome]
) -> None:
    """ARF complaints are automatic but not bounces; a forwarded bounce is a person's mail."""
    for case in cases:
        o = outcomes.get(case.path)
        if o is None or o.disposition is None:
            continue
        if case.expected.get("feedback_report"):
            assert o.disposition.kind == "auto_reply", case.path
        if case.expected.get("forwarded_bounce"):
            assert o.disposition.kind == "human", case.path


# ----------------------------------------------------------------- bounces
def _expected_recipients(expected: dict[str, Any]) -> list[str]:
    found = expected.get("dsn_final_recipients") or expected.get("recipients") or []
    return [a.lower() for a in found]


def test_bounce_attribution_on_dsns_with_a_known_recipient(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """≥ 95% of the bounces whose failed recipients the sources name give us those recipients."""
    for case in cases:
        wanted = _expected_recipients(case.expected)
        o = outcomes.get(case.path)
        if not wanted or o is None or o.disposition is None or o.disposition.kind != "bounce":
            continue
        got = {r.address for r in o.bounce.recipients} if o.bounce else set()
        board.score(case.category, "bounce recipients", set(wanted) <= got, case.path)
    hits, total = board.rate("bounce recipients")
    assert total >= 180
    assert hits / total >= 0.95


def _standard_statuses(expected: dict[str, Any]) -> list[str]:
    status = expected.get("status")
    values = [status] if isinstance(status, str) else list(status or [])
    # sisimai writes its own reasons as x.0.9xx; those are not RFC 3463 codes.
    return [s for s in values if s and int(s.split(".")[2]) < 900]


def test_bounce_status_codes(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """The RFC 3463 status the sources expect, where they name a standard one."""
    for case in cases:
        wanted = _standard_statuses(case.expected)
        o = outcomes.get(case.path)
        if not wanted or o is None or o.bounce is None:
            continue
        got = {r.status for r in o.bounce.recipients}
        board.score(case.category, "bounce status", set(wanted) <= got, case.path)
        # The class (permanent 5 / temporary 4) is what decides a hard bounce.
        classes = {s[0] for s in got if s}
        board.score(case.category, "bounce status class", {s[0] for s in wanted} <= classes,
                    case.path)
    hits, total = board.rate("bounce status class")
    assert total >= 150 and hits / total >= 0.90
    hits, total = board.rate("bounce status")
    assert hits / total >= 0.95  # 147/149 exact at the end of the first session


def test_most_bounces_name_a_recipient_or_the_original(
    outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """A bounce we cannot tie to a recipient or to our outbox is only an event."""
    for path, o in outcomes.items():
        if o.disposition is not None and o.disposition.kind == "bounce":
            board.score(path.split("/")[0], "bounce read", o.bounce is not None and bool(
                o.bounce.recipients), path)
    hits, total = board.rate("bounce read")
    assert hits / total >= 0.95


# ----------------------------------------------------------- reply stripping
def _reply_source(case: Case, outcomes: dict[str, Outcome]) -> str | None:
    if case.path.endswith(".txt"):  # zapier fixtures are bodies only
        return case.file.read_bytes().decode("utf-8", errors="replace")
    o = outcomes.get(case.path)
    return o.parsed.text if o is not None and o.parsed is not None else None


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()


def _reply_ok(expected: dict[str, Any], reply: str, seconds: float) -> bool | None:
    checks: list[bool] = []
    if "reply_text" in expected:
        checks.append(_normalised(reply) == _normalised(expected["reply_text"]))
    contains = expected.get("reply_contains", [])
    for needle in [contains] if isinstance(contains, str) else contains:
        checks.append(needle in reply)
    if "reply_excludes" in expected:
        checks.append(expected["reply_excludes"] not in reply)
    if "max_parse_seconds" in expected:
        checks.append(seconds <= expected["max_parse_seconds"])
    return all(checks) if checks else None


def test_reply_stripping_on_quoted_reply_fixtures(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """core.quotes.strip_quoted leaves what the talon/zapier/Redmine fixtures expect.

    Fixtures that only count fragments (zapier's internal structure) say
    nothing about the visible text and are not scored. Target 90%, asserted;
    27/28 at the end of the first session. The miss keeps a "Sent from my
    iPhone" signature (zapier-email_iPhone), which talon-iphone expects kept.
    """
    for case in cases:
        if case.category != "quoted-replies":
            continue
        source = _reply_source(case, outcomes)
        if source is None:
            continue
        started = time.perf_counter()
        reply = strip_quoted(source)
        verdict = _reply_ok(case.expected, reply, time.perf_counter() - started)
        if verdict is not None:
            board.score(case.category, "reply text", verdict, case.path)
    hits, total = board.rate("reply text")
    assert total >= 25
    assert hits / total >= 0.90


# ---------------------------------------------------------------- parsing
def _header_checks(expected: dict[str, Any], p: ParsedMessage) -> Iterator[tuple[str, bool]]:
    if "subject" in expected:
        yield "subject", p.subject == expected["subject"]
    if "from_email" in expected:
        yield "from address", p.from_addr == expected["from_email"].lower()
    if "from_display_name" in expected:
        yield "from name", p.from_name == expected["from_display_name"]
    if "attachment_filenames" in expected:
        names = {a.filename for a in p.attachments}
        yield "attachment names", set(expected["attachment_filenames"]) <= names


def test_headers_the_sources_state(
    cases: tuple[Case, ...], outcomes: dict[str, Outcome], board: Scoreboard
) -> None:
    """Subjects, From and attachment names as the source projects read them."""
    for case in cases:
        o = outcomes.get(case.path)
        if o is None or o.parsed is None:
            continue
        for check, hit in _header_checks(case.expected, o.parsed):
            board.score(case.category, check, hit, case.path)
    hits, total = board.rate("subject")
    assert total >= 40 and hits / total >= 0.95


def test_classification_census_is_printed(outcomes: dict[str, Outcome], board: Scoreboard) -> None:
    """How each category is classified, for the record (no expectation of its own)."""
    census: Counter[tuple[str, str]] = Counter()
    for path, o in outcomes.items():
        census[(path.split("/")[0], o.disposition.kind if o.disposition else "not-mail")] += 1
    by_category: dict[str, list[str]] = defaultdict(list)
    for (category, kind), n in sorted(census.items()):
        by_category[category].append(f"{kind} {n}")
    board.notes += [f"classified {c:<15} {', '.join(k)}" for c, k in sorted(by_category.items())]
    assert sum(census.values()) == len(outcomes)


# ------------------------------------------------------------ the pipeline
# Crashes of other modules that this test found, with where they happen; each
# is reported to its owner. The test fails on any other crash, and says so
# when one of these stops happening.
# Files the ingest is known to crash on (path → why); none at present.
KNOWN_CRASHES: dict[str, str] = {}
# The ingest costs ~0.1 s of CPU a message (ORM, notifications): the whole
# corpus would take most of the suite's budget. Every hostile category goes
# through in full, the others one file in six; MAILTIX_CORPUS_FULL=1 runs all.
_FULL_CATEGORIES = ("malformed", "autoreply", "tnef")


def _pipeline_sample(cases: tuple[Case, ...]) -> list[Case]:
    mails = [c for c in cases if c.path.endswith(".eml")]
    if os.environ.get("MAILTIX_CORPUS_FULL") == "1":
        return mails
    seen: Counter[str] = Counter()
    sample = []
    for case in mails:
        seen[case.category] += 1
        step = 1 if case.category in _FULL_CATEGORIES else 2 if case.category == "charsets" else 6
        if seen[case.category] % step == 0 or case.path in KNOWN_CRASHES:
            sample.append(case)
    return sample


def test_every_message_ends_stored_on_a_ticket_or_quarantined(
    cases: tuple[Case, ...],
    board: Scoreboard,
    sqlite_template: Path,
    make_config: Any,
    tmp_path: Path,
) -> None:
    """Through the real ingest on a SQLite file: no crash; a ticket, an event, or quarantine.

    Spooled as an SMTP edge would (SPEC §5: nothing stored is ever dropped).
    Files the spool already holds (same Message-ID and content, such as the
    CRLF and CR-only copies of one sisimai sample) are stored once.
    """
    ingest = pytest.importorskip("mailtix.services.ingest", reason="ingest not written yet")
    from mailtix.store import spool
    from mailtix.store.db import Database

    path = tmp_path / "corpus.db"
    path.write_bytes(sqlite_template.read_bytes())
    db = Database(f"sqlite:///{path}")
    cfg = make_config(db_url=f"sqlite:///{path}")
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    crashed: dict[str, str] = {}
    ended: Counter[str] = Counter()
    try:
        for case in _pipeline_sample(cases):
            envelope = spool.Envelope(source="smtp", rcpt_to=("support@example.com",))
            with db.write() as s:
                (stored,) = spool.put_many(s, [(case.file.read_bytes(), envelope)], now)
            if stored.item_id is None:
                ended["already spooled"] += 1
                continue
            try:
                out = ingest.process_item(db, cfg, stored.item_id, now)
            except Exception as err:  # the runner would retry it; this test wants to see it
                crashed[case.path] = f"{type(err).__name__}: {err}"[:160]
                continue
            kept = (out.state == "done" and out.ticket_id is not None) or (
                out.state == "quarantined" and bool(out.detail)
            )
            board.score(case.category, "ingested", kept, case.path)
            ended[out.state] += 1
    finally:
        db.dispose()
    board.notes.append("ingest: " + ", ".join(f"{k} {n}" for k, n in sorted(ended.items())))
    board.notes += [f"ingest crash (known): {p}: {why}" for p, why in crashed.items()]
    board.notes += [f"known crash gone: {p}" for p in KNOWN_CRASHES if p not in crashed]
    unexpected = {p: why for p, why in crashed.items() if p not in KNOWN_CRASHES}
    assert not unexpected
    hits, total = board.rate("ingested")
    assert total >= 250 and hits == total
