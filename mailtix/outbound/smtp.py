"""Deliver outgoing mail to an SMTP smarthost (smtplib).

Security "tls" is implicit TLS (RFC 8314 §3.3, port 465), "starttls" upgrades
a plain session (RFC 3207) and refuses to go on in clear if the server does
not offer it; AUTH uses `[outbound] username` and the resolved password.
Connections are pooled, up to `[outbound] connections`, and reused between
messages; every socket operation has `[outbound] timeout`, so a hanging
server becomes a timeout, i.e. a temporary failure.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mailtix.config import OutboundConfig
from mailtix.outbound.transport import (
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    error_for_code,
)
from mailtix.render.mime import idna_address

log = logging.getLogger(__name__)

# A pooled connection idle longer than this is checked with NOOP before use:
# servers drop idle clients (RFC 5321 §4.5.3.2.7 lets them after 5 minutes).
_IDLE_CHECK_SECONDS = 10.0


class SmtpTransport:
    """A thread-safe Transport to one smarthost, with a small connection pool."""

    def __init__(
        self,
        cfg: OutboundConfig,
        password: str | None = None,
        *,
        local_hostname: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.password = password
        # EHLO name: our mail domain, not socket.getfqdn(), which may block on DNS.
        self.local_hostname = local_hostname or cfg.from_address.rpartition("@")[2] or "localhost"
        self._slots = threading.BoundedSemaphore(cfg.connections)
        self._idle: list[tuple[smtplib.SMTP, float]] = []
        self._lock = threading.Lock()

    # -- connections ----------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        ca = str(self.cfg.ca_file) if self.cfg.ca_file else None
        return ssl.create_default_context(cafile=ca)

    def _connect(self) -> smtplib.SMTP:
        c = self.cfg
        conn: smtplib.SMTP
        if c.security == "tls":
            conn = smtplib.SMTP_SSL(
                c.host, c.port, local_hostname=self.local_hostname, timeout=c.timeout,
                context=self._context(),
            )
        else:
            conn = smtplib.SMTP(
                c.host, c.port, local_hostname=self.local_hostname, timeout=c.timeout
            )
        try:
            conn.ehlo()
            if c.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise TemporaryDeliveryError(f"{c.host}:{c.port} does not offer STARTTLS")
                conn.starttls(context=self._context())
                conn.ehlo()
            if c.username:
                conn.login(c.username, self.password or "")
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    @contextmanager
    def _connection(self) -> Iterator[smtplib.SMTP]:
        """A connection for one message; returned to the pool unless it failed."""
        with self._slots:
            conn = self._take_idle()
            if conn is None:
                conn = self._connect()
            ok = False
            try:
                yield conn
                ok = True
            finally:
                if ok:
                    with self._lock:
                        self._idle.append((conn, time.monotonic()))
                else:
                    _quietly_close(conn)

    def _take_idle(self) -> smtplib.SMTP | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, since = self._idle.pop()
            if time.monotonic() - since < _IDLE_CHECK_SECONDS:
                return conn
            try:
                if conn.noop()[0] == 250:
                    return conn
            except (smtplib.SMTPException, OSError):
                pass
            _quietly_close(conn)

    # -- Transport --------------------------------------------------------
    def send(self, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        """Deliver raw; raise TemporaryDeliveryError or PermanentDeliveryError."""
        try:
            with self._connection() as conn:
                self._sendmail(conn, envelope_from, recipients, raw)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as err:
            # A wrong password is our configuration, not this message: retry later.
            message = f"authentication failed: {_text(err)}"
            raise TemporaryDeliveryError(message, err.smtp_code) from err
        except smtplib.SMTPResponseException as err:
            raise error_for_code(err.smtp_code, _text(err)) from err
        except (smtplib.SMTPException, OSError) as err:
            # No reply code: refused connection, TLS failure, timeout, dropped link.
            raise TemporaryDeliveryError(f"{type(err).__name__}: {err}") from err

    def _sendmail(
        self, conn: smtplib.SMTP, envelope_from: str, recipients: list[str], raw: bytes
    ) -> None:
        sender, rcpts = idna_address(envelope_from), [idna_address(r) for r in recipients]
        # A non-ASCII local part needs SMTPUTF8 (RFC 6531); a domain never does.
        utf8 = not all(a.isascii() for a in (sender, *rcpts))
        try:
            refused = conn.sendmail(sender, rcpts, raw, mail_options=["SMTPUTF8"] if utf8 else [])
        except smtplib.SMTPNotSupportedError as err:
            raise PermanentDeliveryError(f"{err} (needed for a non-ASCII address)") from err
        except smtplib.SMTPRecipientsRefused as err:
            # Every recipient refused; smtplib has sent RSET, the link is reusable.
            codes = [code for code, _ in err.recipients.values()]
            detail = "; ".join(f"{r}: {c} {_decode(m)}" for r, (c, m) in err.recipients.items())
            if any(500 <= c <= 599 for c in codes) and not any(400 <= c <= 499 for c in codes):
                raise PermanentDeliveryError(detail, max(codes)) from err
            raise TemporaryDeliveryError(detail, min(codes)) from err
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as err:
            raise error_for_code(err.smtp_code, _text(err)) from err
        if refused:
            # Some accepted: it cannot be taken back. Rows carry one recipient
            # each, so this only happens to mail enqueued with several.
            log.warning("delivered, but refused for %s", ", ".join(refused))

    def close(self) -> None:
        """Close every pooled connection (QUIT)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _quietly_close(conn, graceful=True)


def _decode(msg: bytes | str) -> str:
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def _text(err: smtplib.SMTPResponseException) -> str:
    return _decode(err.smtp_error)


def _quietly_close(conn: smtplib.SMTP, graceful: bool = False) -> None:
    # After a failure, no QUIT: on a hung link it would wait a whole timeout again.
    if graceful:
        try:
            conn.quit()
            return
        except (smtplib.SMTPException, OSError):
            pass
    conn.close()
