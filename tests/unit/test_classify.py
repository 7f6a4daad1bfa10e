"""Classification of received mail: human, auto-reply, bounce, list, loop (SPEC §6, RFC 3834)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mailtix.core.classify import LOOP_HEADER, RULES, Disposition, Envelope, classify
from mailtix.core.message import ParsedAttachment, ParsedMessage

OWN = Envelope(own_addresses=frozenset({"support@example.com", "billing@example.com"}))


def mail(
    *,
    subject: str = "My printer is on fire",
    from_addr: str = "carol@customer.example",
    text: str = "Hello,\n\nthe printer on floor 2 smells of smoke.\n\nCarol",
    headers: dict[str, str] | None = None,
    content_type: str = "text/plain",
    attachments: tuple[ParsedAttachment, ...] = (),
    in_reply_to: tuple[str, ...] = (),
) -> ParsedMessage:
    """A ParsedMessage as core.parse would build it (headers lower-cased, decoded)."""
    all_headers: dict[str, tuple[str, ...]] = {"from": (from_addr,), "subject": (subject,)}
    for name, value in (headers or {}).items():
        all_headers[name.lower()] = (value,)
    return ParsedMessage(
        message_id="<m1@customer.example>",
        subject=subject,
        from_addr=from_addr,
        from_name="",
        to=("support@example.com",),
        cc=(),
        reply_to=(),
        in_reply_to=in_reply_to,
        references=(),
        date=None,
        text=text,
        html=None,
        attachments=attachments,
        headers=all_headers,
        content_type=content_type,
    )


def kind_of(msg: ParsedMessage, env: Envelope = OWN) -> str:
    return classify(msg, env).kind


# ------------------------------------------------------------------ human
def test_plain_customer_mail_is_human_and_may_be_answered() -> None:
    """No marker at all: a person wrote it, and only then may we auto-reply."""
    found = classify(mail(), OWN)
    assert found == Disposition.human()
    assert found.may_auto_reply


@pytest.mark.parametrize("kind", ["auto_reply", "bounce", "list", "loop"])
def test_only_human_mail_may_get_an_automatic_reply(kind: Any) -> None:
    """may_auto_reply is False for every other kind (SPEC §6)."""
    assert not Disposition(kind, "x").may_auto_reply


def test_auto_submitted_no_is_still_human() -> None:
    """RFC 3834 §5: "Auto-Submitted: no" marks mail from a person."""
    assert kind_of(mail(headers={"Auto-Submitted": "no"})) == "human"


def test_person_announcing_an_absence_in_a_new_request_is_human() -> None:
    """An out-of-office sentence in a fresh, long request is not an auto-reply."""
    text = ("I'm out of the office next week, so could somebody please reset my VPN "
            "password before Friday? " + "Details follow. " * 120)
    assert kind_of(mail(subject="VPN password", text=text)) == "human"


def test_person_answering_that_they_are_away_is_human() -> None:
    """A customer's own short reply about an absence still reaches the ticket."""
    text = "I'm on vacation until Monday, but go ahead and replace the toner.\n\nCarol"
    assert kind_of(mail(subject="Re: [Ticket #4] Printer", text=text)) == "human"


def test_forwarded_bounce_with_a_comment_is_human() -> None:
    """A person forwarding a bounce asks for help (bounces/sisimai-err-make-test-36.eml)."""
    text = (
        "Hi, my mail to the sales team keeps coming back, see below. Can you check?\n\n"
        "Begin forwarded message:\n\n"
        "> From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
        "> Subject: Undelivered Mail Returned to Sender\n"
        "> This is the mail system at host mx.example.net.\n"
        "> I'm sorry to have to inform you that your message could not\n"
        "> be delivered to one or more recipients.\n"
        "> <sales@example.org>: host mx.example.org said: 550 5.1.1 unknown user\n"
    )
    msg = mail(subject="Fwd: Undelivered Mail Returned to Sender", text=text)
    assert kind_of(msg) == "human"


def test_imap_mail_without_return_path_is_not_a_null_sender() -> None:
    """An edge that saw no SMTP records "" for "unknown": that alone proves nothing."""
    assert kind_of(mail(), Envelope(OWN.own_addresses, mail_from="")) == "human"


# ------------------------------------------------------------------- loops
def test_mail_from_our_own_address_is_a_loop() -> None:
    """Our own From, even plus-addressed, means mailtix wrote it (SPEC §6)."""
    assert kind_of(mail(from_addr="support@example.com")) == "loop"
    assert kind_of(mail(from_addr="support+t123@example.com")) == "loop"


def test_mail_with_our_loop_header_is_a_loop() -> None:
    """The header every outgoing mailtix message carries."""
    found = classify(mail(headers={LOOP_HEADER: "support@example.com"}), OWN)
    assert found.kind == "loop"
    assert found.rule == "own_loop"


# ------------------------------------------------------------ auto-replies
@pytest.mark.parametrize(
    "value", ["auto-replied", "auto-generated", "auto-notified", "AUTO-REPLIED"]
)
def test_auto_submitted_other_than_no_is_automatic(value: str) -> None:
    """RFC 3834 §5: any Auto-Submitted value but "no"."""
    found = classify(mail(headers={"Auto-Submitted": value}), OWN)
    assert (found.kind, found.rule) == ("auto_reply", "auto_submitted")


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Autoreply", "yes"), ("X-Autorespond", "Vacation"), ("X-Auto-Response-Suppress", "All"),
     ("X-Auto-Response-Suppress", "OOF, AutoReply")],
)
def test_autoresponder_headers_are_automatic(name: str, value: str) -> None:
    """Vendors' own markers besides RFC 3834 (SPEC §6 names X-Auto-Response-Suppress)."""
    assert kind_of(mail(headers={name: value})) == "auto_reply"


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: My printer is on fire",
        "Automatic reply: My printer is on fire",
        "Auto reply: Nyaan",
        "AUTO: John Smith is out of the office (returning 05/01/2010)",
        "Re: blah (Automatic Response)",
        "[AUTO GENERATED] Some subject",
        "Réponse automatique : Imprimante en feu",
        "Absence du bureau",
        "Absent : retour le 12 mai",
        "Abwesenheitsnotiz: Drucker brennt",
        "Automatische Antwort: Drucker brennt",
        "Respuesta automática: La impresora está en llamas",
        "Fuera de la oficina: impresora",
        "[Automatyczna odpowiedź] test",
    ],
)
def test_out_of_office_subjects_in_four_languages(subject: str) -> None:
    """English, French, German and Spanish vacation subjects (and Outlook/Notes forms)."""
    found = classify(mail(subject=subject), OWN)
    assert (found.kind, found.rule) == ("auto_reply", "autoreply_subject")


@pytest.mark.parametrize(
    "text",
    [
        "Thank you for your message. I am currently out of the office until 5 May "
        "with limited access to e-mail. For urgent matters please contact Bob.",
        "Merci pour votre message. Je suis absent jusqu'au 5 mai. "
        "Je vous répondrai à mon retour.",
        "Vielen Dank für Ihre Nachricht. Ich bin bis 5. Mai nicht im Büro. "
        "In dringenden Fällen wenden Sie sich an Bob.",
        "Gracias por su mensaje. Estoy fuera de la oficina hasta el 5 de mayo. "
        "Para asuntos urgentes, póngase en contacto con Bob.",
    ],
)
def test_out_of_office_bodies_of_short_replies(text: str) -> None:
    """Vacation texts without any header marker, in an answer to our mail."""
    found = classify(mail(subject="Re: [Ticket #4] Printer", text=text), OWN)
    assert (found.kind, found.rule) == ("auto_reply", "autoreply_body")


@pytest.mark.parametrize(
    "text",
    [
        "This is an automatic reply. Your request has been received.",
        "Ceci est une réponse automatique, merci de ne pas y répondre.",
        "Dies ist eine automatische Antwort.",
        "Esta es una respuesta automática.",
    ],
)
def test_text_that_calls_itself_automatic(text: str) -> None:
    """An auto-responder that says what it is, even in a new thread."""
    assert kind_of(mail(subject="Your request", text=text)) == "auto_reply"


def test_null_envelope_sender_is_automatic() -> None:
    """RFC 5321 §4.5.5 null sender, from SMTP or from the final MTA's Return-Path."""
    smtp_null = Envelope(OWN.own_addresses, mail_from="", from_smtp=True)
    assert kind_of(mail(), smtp_null) == "auto_reply"
    assert kind_of(mail(headers={"Return-Path": "<>"})) == "auto_reply"


@pytest.mark.parametrize("sender", ["mailer-daemon@mx.example.net", "postmaster@example.net"])
def test_daemon_senders_are_never_answered(sender: str) -> None:
    """SPEC §6: MAILER-DAEMON and postmaster senders, even without a bounce subject."""
    assert not classify(mail(from_addr=sender, subject="Hello"), OWN).may_auto_reply


def test_feedback_report_is_automatic_not_a_bounce() -> None:
    """An ARF complaint (RFC 5965) is about our mail, but nothing bounced."""
    msg = mail(
        content_type="multipart/report",
        headers={"Content-Type": 'multipart/report; report-type=feedback-report; boundary="x"'},
        subject="Abuse report",
    )
    found = classify(msg, OWN)
    assert (found.kind, found.rule) == ("auto_reply", "feedback_report")


def test_read_receipt_is_automatic() -> None:
    """An RFC 8098 disposition notification."""
    msg = mail(
        content_type="multipart/report",
        headers={"Content-Type": "multipart/report; report-type=disposition-notification"},
        subject="Read: Printer",
    )
    assert kind_of(msg) == "auto_reply"


def test_challenge_response_dressed_as_a_dsn_is_an_auto_reply() -> None:
    """Boxbe's "prove you are human" is a multipart/report (autoreply/bounceparser-boxbe-cr.eml)."""
    msg = mail(
        content_type="multipart/report",
        headers={"Content-Type": "multipart/report; report-type=delivery-status"},
        subject="Re: Printer",
        text="Your message about Printer has been waitlisted. Sender not pre-approved.",
    )
    found = classify(msg, OWN)
    assert (found.kind, found.rule) == ("auto_reply", "challenge_response")


# ----------------------------------------------------------------- bounces
def test_dsn_is_a_bounce() -> None:
    """RFC 3464 in an RFC 6522 multipart/report."""
    msg = mail(
        from_addr="mailer-daemon@mx.example.net",
        subject="Undelivered Mail Returned to Sender",
        content_type="multipart/report",
        headers={"Content-Type": 'multipart/report; report-type="delivery-status"; boundary=b'},
    )
    found = classify(msg, OWN)
    assert (found.kind, found.rule) == ("bounce", "delivery_status")


def test_bounce_wins_over_its_own_auto_submitted_header() -> None:
    """MTAs mark bounces auto-replied too (bounces/bounceparser-non-autoreply.eml)."""
    msg = mail(
        from_addr="mailer-daemon@mx.example.net",
        subject="Mail delivery failed: returning message to sender",
        headers={"Auto-Submitted": "auto-replied", "X-Failed-Recipients": "x@example.org"},
    )
    assert kind_of(msg) == "bounce"


@pytest.mark.parametrize(
    ("sender", "subject"),
    [
        ("mailer-daemon@mx.example.net", "Undelivered Mail Returned to Sender"),
        ("mailer-daemon@googlemail.com", "Delivery Status Notification (Failure)"),
        ("mailer-daemon@mx.example.net", "Mail delivery failed: returning message to sender"),
        ("postmaster@example.net", "Undeliverable: My printer is on fire"),
        ("mailer-daemon@mx.example.net", "failure notice"),
        ("mailer-daemon@mx.example.net", "Returned mail: see transcript for details"),
        ("postmaster@example.de", "Unzustellbar: Drucker"),
        ("postmaster@example.fr", "Non remis : Imprimante"),
    ],
)
def test_non_standard_bounces_from_daemons(sender: str, subject: str) -> None:
    """Bounces without a report, known by their sender and subject."""
    assert kind_of(mail(from_addr=sender, subject=subject, text="")) == "bounce"


def test_daemon_text_that_returns_the_original_is_a_bounce() -> None:
    """A daemon's notice with an odd subject but the original attached."""
    original = ParsedAttachment("original.eml", "message/rfc822", b"Subject: hi\n\nhi\n")
    msg = mail(from_addr="mailer-daemon@mx.example.net", subject="Mail", text="Sorry.",
               attachments=(original,))
    assert kind_of(msg) == "bounce"


# ------------------------------------------------------------------- lists
@pytest.mark.parametrize(
    ("name", "value"),
    [("List-Id", "<users.lists.example.org>"), ("List-Unsubscribe", "<mailto:leave@x.org>"),
     ("Precedence", "list"), ("Precedence", "bulk"), ("Precedence", "junk")],
)
def test_list_and_bulk_mail(name: str, value: str) -> None:
    """RFC 2919/2369 list headers and Precedence bulk|junk|list: never auto-answered."""
    found = classify(mail(headers={name: value}), OWN)
    assert found.kind == "list"
    assert not found.may_auto_reply


def test_vacation_reply_with_precedence_bulk_is_an_auto_reply() -> None:
    """Specific markers outrank Precedence (autoreply/bounceparser-autoreply.eml)."""
    msg = mail(subject="Out of office", headers={"Precedence": "bulk"})
    assert kind_of(msg) == "auto_reply"


# ------------------------------------------------------------------- rules
def test_every_rule_is_a_named_function_that_gives_a_reason() -> None:
    """The pipeline is a readable list; each decision says why and which rule made it."""
    names = [rule.__name__ for rule in RULES]
    assert len(names) == len(set(names))
    assert names[0] == "_own_loop"
    base = mail(from_addr="support@example.com")
    found = classify(base, OWN)
    assert found.reason and found.rule == "own_loop"
    assert classify(replace(base, from_addr="x@y.example"), OWN).rule == ""


def test_another_mailtix_loop_header_is_not_our_loop() -> None:
    """X-Mailtix-Loop naming someone else's address is automatic mail, not our own loop."""
    theirs = mail(headers={LOOP_HEADER: "help@vendor.example", "Auto-Submitted": "auto-replied"})
    ours = mail(headers={LOOP_HEADER: "support@example.com"})
    assert kind_of(theirs) == "auto_reply"
    assert kind_of(ours) == "loop"


def test_auto_submitted_values_other_than_no_are_automatic() -> None:
    """RFC 3834 §5: "no" (with parameters) is human; "none" is not "no"."""
    assert kind_of(mail(headers={"Auto-Submitted": "no; x=1"})) == "human"
    assert kind_of(mail(headers={"Auto-Submitted": "No (sent by a person)"})) == "human"
    assert kind_of(mail(headers={"Auto-Submitted": "none"})) == "auto_reply"
