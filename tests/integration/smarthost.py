"""A scriptable SMTP smarthost sink (aiosmtpd) for outbound tests and benchmarks.

Started by the test on 127.0.0.1 and a free port, stopped by it. By default
every message gets `250`; a script changes the answer to DATA per attempt,
for one Message-ID or for any message: "451 …" (temporary), "550 …"
(permanent) or "hang" (never answer, until the sink is released or stopped).
Optional STARTTLS, implicit TLS and AUTH (PLAIN/LOGIN) like a real relay.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HANG = "hang"
_MSGID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Received:
    """One message the sink accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    message_id: str | None
    login: str | None


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1/localhost (openssl, ~10 ms)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


class _Handler:
    def __init__(self, sink: Smarthost) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        m = _MSGID.search(content.split(b"\r\n\r\n", 1)[0])
        message_id = m.group(1).decode() if m else None
        reply = self.sink._next_reply(message_id)
        if reply == HANG:
            await self.sink._release_event().wait()
            return "451 4.4.2 released after hanging"
        if reply.startswith("250"):
            auth = session.auth_data
            login = auth.login.decode() if isinstance(auth, LoginPassword) else None
            self.sink._accept(Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=content,
                message_id=message_id,
                login=login,
            ))
        return reply


class _Controller(Controller):
    """An aiosmtpd Controller on a socket bound before start: port 0 without a race."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class Smarthost:
    """An SMTP sink with scripted answers. Use as a context manager."""

    def __init__(
        self,
        *,
        starttls: tuple[Path, Path] | None = None,
        implicit_tls: tuple[Path, Path] | None = None,
        users: dict[str, str] | None = None,
        smtputf8: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.received: list[Received] = []
        self.attempts = 0  # DATA commands answered (or hung)
        self.sessions = 0
        self._scripts: dict[str | None, deque[str]] = defaultdict(deque)
        self._cond = threading.Condition()
        self._release: asyncio.Event | None = None
        self._starttls = starttls
        self._implicit = implicit_tls
        self._users = users
        self._smtputf8 = smtputf8
        self._controller: _Controller | None = None

    # -- scripting -------------------------------------------------------
    def script(self, *replies: str, message_id: str | None = None) -> None:
        """Answer the next attempts with replies (for message_id, or for any message)."""
        with self._cond:
            self._scripts[message_id].extend(replies)

    def _next_reply(self, message_id: str | None) -> str:
        with self._cond:
            self.attempts += 1
            for key in (message_id, None):
                if self._scripts.get(key):
                    return self._scripts[key].popleft()
            return "250 2.0.0 OK queued"

    def _accept(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()

    def _release_event(self) -> asyncio.Event:
        if self._release is None:
            self._release = asyncio.Event()
        return self._release

    def release(self) -> None:
        """Let every hanging DATA answer (451)."""
        assert self._controller is not None
        self._controller.loop.call_soon_threadsafe(self._release_event().set)

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until count messages were accepted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= count, timeout)

    def wait_attempts(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until count DATA attempts were seen; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.attempts >= count, timeout)

    def count(self, message_id: str) -> int:
        """How many times message_id was accepted."""
        with self._cond:
            return sum(1 for r in self.received if r.message_id == message_id)

    # -- lifecycle -------------------------------------------------------
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self._users is not None
            and self._users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> Smarthost:
        """Listen on 127.0.0.1 and a free port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": self._smtputf8}
        if self._starttls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*map(str, self._starttls))
            kwargs.update(tls_context=ctx, require_starttls=True)
        if self._implicit:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*map(str, self._implicit))
            # aiosmtpd does not count implicit TLS as TLS for AUTH; it is TLS here.
            kwargs.update(ssl_context=ctx, auth_require_tls=False)
        if self._users is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = _Controller(_Handler(self), sock, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening; hanging sessions are cancelled."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Smarthost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
