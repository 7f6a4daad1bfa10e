"""The exceptions of mailtix, and the one table that maps them to codes.

Exceptions mean "cannot finish". Decisions (an auto-reply, an unknown
command) are values, not exceptions. Two families matter: temporary (try
again later: SMTP 451, exit 75, leave IMAP mail in place) and permanent
(the input is refused for good: SMTP 5xx, exit 65).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class MailtixError(Exception):
    """Base of every mailtix error."""


class ConfigError(MailtixError):
    """The configuration is invalid; `problems` lists (key path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        first = problems[0] if problems else ("", "invalid configuration")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first[0]}: {first[1]}{more}" if first[0] else first[1] + more)


class UserError(MailtixError):
    """A command-line request that cannot be honoured (unknown ticket, bad file)."""


class TemporaryError(MailtixError):
    """Cannot finish now; the same request may succeed later (database down, disk full)."""


class StoreUnavailable(TemporaryError):
    """The database cannot be written or read."""


class UnknownQueue(TemporaryError):
    """A pipe or import names a queue the config does not have.

    Temporary on purpose: the customer's mail stays with the MTA (exit 75)
    while the admin fixes the alias or the config, instead of bouncing.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no queue named {name!r} in the config; the message was not stored")


class PermanentError(MailtixError):
    """The input is refused for good."""


class NotMail(PermanentError):
    """The input is not an RFC 5322 message at all."""


class MessageTooLarge(PermanentError):
    """The message is over the configured size limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")


class UnknownRecipient(PermanentError):
    """The recipient is not an address of any queue."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"recipient not ours: {address}")


@dataclass(frozen=True)
class Outcome:
    """How one error is reported at each edge."""

    smtp: str
    exit_code: int


# One table: error family → SMTP reply and process exit code (sysexits.h).
EX_OK = 0
EX_DATAERR = getattr(os, "EX_DATAERR", 65)
EX_TEMPFAIL = getattr(os, "EX_TEMPFAIL", 75)
EX_CONFIG = getattr(os, "EX_CONFIG", 78)

_OUTCOMES: list[tuple[type[BaseException], Outcome]] = [
    (UnknownRecipient, Outcome("550 5.1.1 Recipient address rejected: not ours", EX_DATAERR)),
    (MessageTooLarge, Outcome("552 5.3.4 Message too big for system", EX_DATAERR)),
    (NotMail, Outcome("554 5.6.0 Message is not RFC 5322 mail", EX_DATAERR)),
    (ConfigError, Outcome("451 4.3.5 System not configured", EX_CONFIG)),
    (UserError, Outcome("554 5.0.0 Request refused", 1)),
    (TemporaryError, Outcome("451 4.3.0 Temporary failure, please try again later", EX_TEMPFAIL)),
    (PermanentError, Outcome("554 5.0.0 Message refused", EX_DATAERR)),
]
_UNEXPECTED = Outcome("451 4.3.0 Temporary failure, please try again later", EX_TEMPFAIL)


def outcome_for(exc: BaseException) -> Outcome:
    """The SMTP reply and exit code for exc; anything unexpected is temporary."""
    for kind, outcome in _OUTCOMES:
        if isinstance(exc, kind):
            return outcome
    return _UNEXPECTED
