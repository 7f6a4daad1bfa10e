"""Decide what kind of mail a message is, and whether it may get an automatic reply.

A readable list of small rules (RFC 3834 §2, SPEC §6 and the corpus), first
match wins. Order matters where markers overlap:

- bounces come before `Auto-Submitted`, because MTAs mark their bounces
  `auto-replied` too (corpus bounces/bounceparser-non-autoreply.eml), and the
  lead must record a bounce, not file it as an auto-reply;
- challenge/response comes before bounces, because those systems dress their
  "prove you are human" mail as a DSN (autoreply/bounceparser-boxbe-cr.eml);
- mailing-list and bulk markers come last: a vacation reply often carries
  `Precedence: bulk` (autoreply/bounceparser-autoreply.eml) and is better
  called an auto-reply.

A bounce that a person forwards with a comment ("Fwd: Returned mail…", the
report quoted with "> ", bounces/sisimai-err-make-test-36.eml) has no marker of
its own and falls through to human, as it should.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mailtix.core import phrases
from mailtix.core.message import ParsedMessage

Kind = Literal["human", "auto_reply", "bounce", "list", "loop"]
LOOP_HEADER = "x-mailtix-loop"

# Local parts that only machines send from (SPEC §6; RFC 5321 §4.5.1 postmaster).
_DAEMON_LOCALS = frozenset(
    {"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "postmaster",
     "post_master", "mmdf"}
)
# Senders that cannot take an answer; counted as machines only when the text
# also says delivery failed (bounces/sisimai-lhost-kddi-01.eml).
_NOREPLY_LOCALS = frozenset({"no-reply", "noreply", "do-not-reply", "donotreply", "do_not_reply"})
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w.-]+)", re.IGNORECASE)
_HEAD_CHARS = 4000  # how much of the body the text rules read


@dataclass(frozen=True)
class Disposition:
    """What a message is, why we think so, and whether we may answer it automatically."""

    kind: Kind
    reason: str = ""
    rule: str = ""  # name of the rule that decided, for logs and tests

    @property
    def may_auto_reply(self) -> bool:
        """True only for mail from a person (SPEC §6)."""
        return self.kind == "human"

    @classmethod
    def human(cls) -> Disposition:
        """The default: no marker of automated mail."""
        return cls("human", "no automated-mail marker")


@dataclass(frozen=True)
class Envelope:
    """What classification needs beyond the message: who we are, who sent it."""

    own_addresses: frozenset[str]
    mail_from: str = ""  # the SMTP envelope sender as the edge recorded it
    # True when mail_from is what an SMTP/LMTP client said to us, so "" really
    # is the null sender (RFC 5321 §4.5.5). Edges that did not see the SMTP
    # transaction (IMAP, import, a pipe without a From_ line) record "" for
    # "unknown" too; then the Return-Path the delivering MTA wrote decides.
    from_smtp: bool = False


Rule = Callable[[ParsedMessage, Envelope], Disposition | None]


# ----------------------------------------------------------------- helpers
def _bare(address: str) -> str:
    """user+tag@domain → user@domain, lower-cased."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return domain
    return f"{local.split('+', 1)[0]}@{domain}"


def _report_type(msg: ParsedMessage) -> str | None:
    """The report-type of a multipart/report message (RFC 6522 §3), lower-cased."""
    if msg.content_type.lower() != "multipart/report":
        return None
    found = _REPORT_TYPE.search(msg.header("content-type") or "")
    return found.group(1).lower() if found else ""


def _from_daemon(msg: ParsedMessage) -> bool:
    """From MAILER-DAEMON, postmaster or the like (also when the address is unparseable)."""
    local = msg.from_addr.partition("@")[0]
    if local in _DAEMON_LOCALS:
        return True
    raw_from = (msg.header("from") or "").lower()
    return "mailer-daemon" in raw_from or raw_from.strip() == "<>"


def _envelope_sender(msg: ParsedMessage, env: Envelope) -> str | None:
    """The SMTP envelope sender ("" for null), or None when nobody recorded it."""
    if env.from_smtp:
        return _unbracket(env.mail_from)
    return_path = msg.header("return-path")
    if return_path is not None:
        # RFC 5321 §4.4: the final MTA records MAIL FROM as Return-Path.
        return _unbracket(return_path)
    return _unbracket(env.mail_from) or None


def _unbracket(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def _null_sender(msg: ParsedMessage, env: Envelope) -> bool:
    """The envelope sender is null (RFC 5321 §4.5.5: bounces and auto-replies use it)."""
    return _envelope_sender(msg, env) == ""


def _machine_sender(msg: ParsedMessage, env: Envelope) -> bool:
    """A null sender, or a daemon in From or in the envelope (Return-Path: <MAILER-DAEMON@…>)."""
    sender = _envelope_sender(msg, env)
    if sender is not None and (sender == "" or sender.partition("@")[0] in _DAEMON_LOCALS):
        return True
    return _from_daemon(msg)


def _own_text(msg: ParsedMessage) -> str:
    """The head of the body without quoted lines ("> …"): what the sender wrote."""
    lines = msg.text[:_HEAD_CHARS].splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith(">"))


def _answers(msg: ParsedMessage) -> bool:
    """The message replies to another: a reply prefix or In-Reply-To/References."""
    return bool(msg.in_reply_to or msg.references or phrases.REPLY_PREFIX.match(msg.subject))


def _attaches_original(msg: ParsedMessage) -> bool:
    """A returned message or its headers is attached (RFC 3462 §2 parts)."""
    return any(
        a.content_type.lower() in ("message/rfc822", "text/rfc822-headers", "message/global")
        for a in msg.attachments
    )


# ------------------------------------------------------------------- rules
def _own_loop(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    own = {_bare(a) for a in env.own_addresses}
    # Every mailtix stamps its own address in this header: another instance's
    # mail (a vendor's helpdesk) is automatic mail, but not our own loop.
    for value in msg.headers.get(LOOP_HEADER, ()):
        if _bare(value.strip().strip("<>")) in own:
            return Disposition("loop", f"carries our {LOOP_HEADER} header", "own_loop")
    if msg.from_addr and _bare(msg.from_addr) in own:
        return Disposition("loop", f"sent from our own address {msg.from_addr}", "own_loop")
    return None


def _feedback_report(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # ARF (RFC 5965): a complaint about mail we sent, not a delivery failure
    # (bounces/sisimai-arf-*.eml, bounces/flanker-complaints-*.eml).
    if _report_type(msg) == "feedback-report":
        return Disposition("auto_reply", "ARF feedback report (RFC 5965)", "feedback_report")
    return None


def _read_receipt(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # MDN (RFC 8098): "your message was displayed".
    if _report_type(msg) == "disposition-notification":
        return Disposition("auto_reply", "read receipt (RFC 8098 MDN)", "read_receipt")
    return None


def _challenge_response(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # Such a message always answers mail of ours: a report, or a reply.
    answers = _report_type(msg) is not None or _answers(msg) or _null_sender(msg, env)
    if answers and phrases.CHALLENGE_RESPONSE.search(_own_text(msg)[:2000]):
        return Disposition("auto_reply", "challenge/response sender verification",
                           "challenge_response")
    return None


def _delivery_status(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # RFC 3464 DSN in an RFC 6522 multipart/report.
    report = _report_type(msg)
    if report in ("delivery-status", "global-delivery-status"):
        return Disposition("bounce", f"multipart/report; report-type={report}", "delivery_status")
    if report == "" and _machine_sender(msg, env):
        # Reports without their parameter (bounces/sisimai-lhost-x3-02.eml).
        return Disposition("bounce", "multipart/report from a mail daemon", "delivery_status")
    if msg.content_type.lower() in ("message/delivery-status", "message/global-delivery-status"):
        # A bare report with no wrapper (bounces/flanker-bounce-delayed-broken.eml).
        return Disposition("bounce", f"{msg.content_type} message", "delivery_status")
    return None


def _failed_recipients(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # Exim and Gmail name the failed recipients in a header of the bounce itself.
    if msg.has_header("x-failed-recipients"):
        return Disposition("bounce", "X-Failed-Recipients header", "failed_recipients")
    return None


def _daemon_bounce(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # Non-standard bounces: a daemon (or the null sender) that says delivery
    # failed, in its subject or its text, or returns the original.
    if _machine_sender(msg, env):
        if phrases.BOUNCE_SUBJECT.search(msg.subject.strip()):
            return Disposition("bounce", f"delivery failure subject: {msg.subject[:60]}",
                               "daemon_bounce")
        if phrases.BOUNCE_BODY.search(_own_text(msg)) or _attaches_original(msg):
            return Disposition("bounce", "delivery failure notice from a mail daemon",
                               "daemon_bounce")
    elif (
        msg.from_addr.partition("@")[0] in _NOREPLY_LOCALS
        and _attaches_original(msg)
        and phrases.BOUNCE_BODY.search(_own_text(msg))
    ):
        return Disposition("bounce", "delivery failure notice from a no-reply sender",
                           "daemon_bounce")
    return None


def _failure_notice(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # Bounces from senders with ordinary names ("MMSC NDR Administrator
    # <sysadmin@…>", bounces/sisimai-lhost-verizon-01.eml): a failure subject
    # AND failure text of its own. A person forwarding one adds "Fwd:".
    subject = msg.subject.strip()
    if phrases.FORWARD_PREFIX.match(subject) or phrases.REPLY_PREFIX.match(subject):
        return None
    if phrases.BOUNCE_SUBJECT.search(subject) and phrases.BOUNCE_BODY.search(_own_text(msg)):
        return Disposition("bounce", f"delivery failure subject and text: {subject[:60]}",
                           "failure_notice")
    return None


def _auto_submitted(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # RFC 3834 §5: any value but "no" marks automatic mail.
    value = (msg.header("auto-submitted") or "no").strip().lower()
    # The keyword alone decides: "no (sent by a person)" and "no; x=1" are "no".
    keyword = re.sub(r"\([^()]*\)", " ", value).split(";", 1)[0].strip()
    if keyword != "no":
        return Disposition("auto_reply", f"Auto-Submitted: {value}", "auto_submitted")
    return None


# Headers auto-responders put on their mail besides RFC 3834's: X-Autoreply
# (Yandex, Courier), X-Autorespond (cPanel), X-Auto-Response-Suppress
# (Exchange, [MS-OXCMAIL] 2.2.3.2.20; SPEC §6), X-Autogenerated (Exchange).
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress",
                      "x-autogenerated", "x-autoreply-from", "x-mail-autoreply")


def _autoreply_headers(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    for name in _AUTOREPLY_HEADERS:
        value = msg.header(name)
        if value is not None and value.strip().lower() not in ("no", "none", "false", "0"):
            return Disposition("auto_reply", f"{name}: {value.strip()[:40]}", "autoreply_headers")
    return None


def _autoreply_subject(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    if phrases.AUTOREPLY_SUBJECT.search(msg.subject.strip()):
        return Disposition("auto_reply", f"out-of-office subject: {msg.subject[:60]}",
                           "autoreply_subject")
    return None


def _automated_sender(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # SPEC §6: null or MAILER-DAEMON/postmaster senders never get an answer.
    if _null_sender(msg, env):
        return Disposition("auto_reply", "null envelope sender", "automated_sender")
    if _machine_sender(msg, env):
        return Disposition("auto_reply", f"sent by {msg.from_addr or 'a mail daemon'}",
                           "automated_sender")
    return None


def _autoreply_body(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    own = _own_text(msg)
    if phrases.AUTOREPLY_DECLARATION.search(own[:1000]):
        return Disposition("auto_reply", "text says it is an automatic reply", "autoreply_body")
    # "I am out of the office" alone could be a person: trust it at the top of
    # a short answer (auto-responders reply, they rarely start threads) that
    # also says whom to ask meanwhile or when an answer will come.
    if (
        _answers(msg)
        and len(own.strip()) < 1500
        and phrases.OUT_OF_OFFICE_BODY.search(own[:400])
        and phrases.OUT_OF_OFFICE_CUE.search(own)
    ):
        return Disposition("auto_reply", "out-of-office text in a short reply", "autoreply_body")
    return None


def _mailing_list(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # RFC 2919 List-Id, RFC 2369 List-Unsubscribe, Precedence: list.
    if msg.has_header("list-id"):
        return Disposition("list", "List-Id header", "mailing_list")
    if msg.has_header("list-unsubscribe"):
        return Disposition("list", "List-Unsubscribe header", "mailing_list")
    if msg.has_header("mailing-list"):
        # ezmlm and fml (bounces/sisimai-lhost-fml-02.eml: a list's "not a member" notice).
        return Disposition("list", "Mailing-List header", "mailing_list")
    return None


def _precedence(msg: ParsedMessage, env: Envelope) -> Disposition | None:
    # Precedence (RFC 2076 §3.9, RFC 3834 §2) is old practice: lists and bulk
    # senders set it (threading/flanker-from-encoding.eml is a list post with
    # "bulk"); a junk/bulk message is mass mail, not an answer to anyone.
    value = (msg.header("precedence") or "").strip().lower()
    if value in ("bulk", "junk", "list"):
        return Disposition("list", f"Precedence: {value}", "precedence")
    return None


RULES: list[Rule] = [
    _own_loop,
    _feedback_report,
    _read_receipt,
    _challenge_response,
    _delivery_status,
    _failed_recipients,
    _daemon_bounce,
    _failure_notice,
    _auto_submitted,
    _autoreply_headers,
    _autoreply_subject,
    _automated_sender,
    _autoreply_body,
    _mailing_list,
    _precedence,
]


def classify(msg: ParsedMessage, env: Envelope) -> Disposition:
    """The first rule that recognises msg decides; otherwise it is from a human."""
    for rule in RULES:
        found = rule(msg, env)
        if found is not None:
            return found
    return Disposition.human()
