"""The one seam between the sender and the wire: `Transport.send`.

A transport delivers one message or raises one of two errors. The sender
only needs to know which family: temporary (4xx, refused connection,
timeout — try again later) or permanent (5xx — the message will never be
accepted). Transports must be safe to call from several threads.
"""

from __future__ import annotations

from typing import Protocol

from mailtix.config import Config
from mailtix.errors import PermanentError, TemporaryError


class DeliveryError(Exception):
    """A delivery did not happen; code is the SMTP reply code when there was one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(f"{code} {message}" if code else message)


class TemporaryDeliveryError(DeliveryError, TemporaryError):
    """Try again later: a 4xx reply (RFC 5321 §4.2.1), no connection, a timeout."""


class PermanentDeliveryError(DeliveryError, PermanentError):
    """The smarthost refused the message for good: a 5xx reply (RFC 5321 §4.2.1)."""


class Transport(Protocol):
    """Delivers raw bytes to recipients with envelope_from as MAIL FROM."""

    def send(self, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        """Deliver, or raise TemporaryDeliveryError / PermanentDeliveryError."""
        ...

    def close(self) -> None:
        """Release connections; the transport may be used again afterwards."""
        ...


def error_for_code(code: int, message: str) -> DeliveryError:
    """The error family of an SMTP reply code: 5xx permanent, anything else temporary."""
    if 500 <= code <= 599:
        return PermanentDeliveryError(message, code)
    return TemporaryDeliveryError(message, code)


def transport_for(cfg: Config) -> Transport:
    """The transport `[outbound] transport` names, built from the config."""
    # Imported here: both modules import this one for the errors above.
    from mailtix.outbound.maildir import MaildirTransport
    from mailtix.outbound.smtp import SmtpTransport

    if cfg.outbound.transport == "smtp":
        return SmtpTransport(cfg.outbound, cfg.secrets.get("outbound.password"))
    return MaildirTransport(cfg.outbound.maildir)
