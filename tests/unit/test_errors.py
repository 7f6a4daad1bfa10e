"""One table maps errors to SMTP replies and exit codes (SPEC §1, §5)."""

from mailtix.errors import (
    MessageTooLarge,
    NotMail,
    StoreUnavailable,
    UnknownRecipient,
    outcome_for,
)


def test_codes_of_each_family() -> None:
    """550 5.1.1, 552 5.3.4, 451 4.3.0; exit 65 for bad input, 75 for try-later."""
    assert outcome_for(UnknownRecipient("x@y")).smtp.startswith("550 5.1.1")
    assert outcome_for(MessageTooLarge(10, 5)).smtp.startswith("552 5.3.4")
    assert outcome_for(StoreUnavailable("down")).smtp.startswith("451 4.3.0")
    assert outcome_for(NotMail("empty")).exit_code == 65
    assert outcome_for(StoreUnavailable("down")).exit_code == 75


def test_unexpected_errors_are_temporary_and_do_not_echo() -> None:
    """A bug is a 451 that says nothing of the exception (never aiosmtpd's 500 with text)."""
    out = outcome_for(ZeroDivisionError("secret detail"))
    assert out.smtp.startswith("451 4.3.0") and "secret" not in out.smtp
    assert out.exit_code == 75
