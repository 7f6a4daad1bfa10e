"""The SMTP/LMTP listener: check recipients at RCPT, store at DATA, then reply.

Built on aiosmtpd (handler hooks return reply strings). Nothing is parsed
here: the bytes exactly as received (`original_content`) and the envelope go
to the GroupCommitter, and the 250 is sent only once their transaction
committed (SPEC §5). Any failure is a 451 4.3.0, never aiosmtpd's default
500 that echoes the exception.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from concurrent.futures import Future
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession

from mailtix.config import Config
from mailtix.errors import MessageTooLarge, TemporaryError, UnknownRecipient, outcome_for
from mailtix.inbound.groupcommit import GroupCommitter
from mailtix.store.spool import Envelope, Stored

log = logging.getLogger(__name__)

# Seconds stop() lets sessions in the middle of DATA finish before closing them.
DRAIN_SECONDS = 3.0
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
# aiosmtpd's own replies at the end of DATA (too much data, a line too long).
_DATA_REFUSALS = ("552 Error: Too much mail data", "500 Line too long")


def _queued(stored: Stored) -> str:
    if stored.duplicate:
        return f"250 2.0.0 Ok: already queued as {stored.dedupe_key[:16]}"
    return f"250 2.0.0 Ok: queued as {stored.item_id}"


LONGEST_LINE = 1 << 20


class _Handler:
    """aiosmtpd hooks: RCPT checks, DATA stores, errors become 451."""

    def __init__(self, cfg: Config, committer: GroupCommitter) -> None:
        self._cfg = cfg
        self._committer = committer
        self._lmtp = cfg.listener.protocol == "lmtp"
        self._source = cfg.listener.protocol

    async def handle_EHLO(
        self,
        server: SMTP,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise PIPELINING (RFC 2920): aiosmtpd copes with it but does not say so."""
        session.host_name = hostname  # the 5-argument hook replaces aiosmtpd's own bookkeeping
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        """Accept the sender; aiosmtpd already refused a declared SIZE over the limit."""
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        """Accept only addresses of our queues (plus-addressed too): never relay."""
        if self._cfg.queue_for_address(address) is None:
            return outcome_for(UnknownRecipient(address)).smtp
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: SMTPEnvelope) -> str:
        """Store the bytes as received; reply only after the commit."""
        raw = envelope.original_content or b""
        rcpts = tuple(envelope.rcpt_tos)
        queue = self._cfg.queue_for_address(rcpts[0]) if rcpts else None
        # MAIL FROM:<> (a bounce) arrives as "<>"; the spool spells the null sender "".
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        env = Envelope(
            source=self._source,
            mail_from=mail_from,
            rcpt_to=rcpts,
            queue=queue.name if queue else None,
        )
        try:
            reply = _queued(await asyncio.wrap_future(self._committer.submit(raw, env)))
        except TemporaryError as exc:
            log.warning("refused (temporary) from %s: %s", session.peer, exc)
            reply = outcome_for(exc).smtp
        except Exception as exc:
            log.exception("storing a message from %s failed", session.peer)
            reply = outcome_for(exc).smtp
        if self._lmtp:
            # RFC 2033 §4.2: one reply per accepted recipient, all for the one stored copy.
            return "\r\n".join([reply] * max(1, len(rcpts)))
        return reply

    async def handle_exception(self, error: Exception) -> str:
        """Any unexpected error in a session: log it, answer 451 (never echo it)."""
        log.error("SMTP session error", exc_info=error)
        return outcome_for(error).smtp


class _EdgeMixin:
    """What mailtix's SMTP and LMTP sessions add to aiosmtpd's."""

    listener: Listener
    transport: asyncio.BaseTransport | None
    _handler_coroutine: asyncio.Task[None] | None

    async def push(self, status: str | bytes) -> None:
        # aiosmtpd words its own size refusals (declared SIZE at MAIL, too
        # much DATA) without the enhanced code; RFC 3463 §3.4 wants 5.3.4.
        if isinstance(status, str) and status.startswith("552 Error"):
            status = self.listener.too_big
        await super().push(status)  # type: ignore[misc]

    async def smtp_DATA(self, arg: str) -> None:
        # Counted from the 354 to the final reply, so stop() can let it finish.
        if self.listener.closing:
            await self.push(SHUTTING_DOWN)
            if self.transport is not None:
                self.transport.close()
            return
        self.listener.data_started()
        try:
            await super().smtp_DATA(arg)  # type: ignore[misc]
        finally:
            self.listener.data_ended()

    def connection_lost(self, error: Exception | None) -> None:
        self.listener.sessions.discard(self)  # type: ignore[arg-type]
        super().connection_lost(error)  # type: ignore[misc]


class _SMTPSession(_EdgeMixin, SMTP):
    pass


class _LMTPSession(_EdgeMixin, LMTP):
    async def push(self, status: str | bytes) -> None:
        # RFC 2033 §4.2: after DATA, one reply per accepted recipient, refusals
        # included; aiosmtpd sends its own end-of-DATA refusals only once, and a
        # client waiting for the others would hang.
        if isinstance(status, str) and status.startswith(_DATA_REFUSALS) and self.envelope:
            for _ in range(len(self.envelope.rcpt_tos) - 1):
                await super().push(status)
        await super().push(status)


def _tls_context(cfg: Config) -> ssl.SSLContext | None:
    lc = cfg.listener
    if lc.tls_cert is None or lc.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(lc.tls_cert), str(lc.tls_key))
    return ctx


class Listener:
    """An SMTP or LMTP server on its own thread and event loop."""

    def __init__(
        self, cfg: Config, committer: GroupCommitter, *, drain_seconds: float = DRAIN_SECONDS
    ) -> None:
        self._cfg = cfg
        self._handler = _Handler(cfg, committer)
        self._drain_seconds = drain_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.too_big = outcome_for(MessageTooLarge(0, 0)).smtp
        self.closing = False
        self.sessions: set[_EdgeMixin] = set()
        self._in_data = 0
        self._no_data: asyncio.Event | None = None

    # -- called from sessions, on the loop -----------------------------
    def data_started(self) -> None:
        """A session entered DATA."""
        self._in_data += 1
        assert self._no_data is not None
        self._no_data.clear()

    def data_ended(self) -> None:
        """A session finished DATA (replied, or lost its connection)."""
        self._in_data -= 1
        if self._in_data == 0:
            assert self._no_data is not None
            self._no_data.set()

    # -- life cycle ----------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Bind and serve on a thread; return the bound (host, port)."""
        if self._thread is not None:
            raise RuntimeError("Listener already started")
        bound: Future[tuple[str, int]] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(bound,), name="mailtix-listener", daemon=True
        )
        self._thread.start()
        try:
            return bound.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise

    def stop(self) -> None:
        """Stop accepting, let sessions in DATA finish, close the rest, end the thread."""
        if self._thread is None or self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def _serve(self, bound: Future[tuple[str, int]]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's own loop, for aiosmtpd and gather()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(self._bind(loop))
        except BaseException as exc:
            loop.close()
            self._loop = None
            bound.set_exception(exc)
            return
        sockname = self._server.sockets[0].getsockname()
        bound.set_result((sockname[0], sockname[1]))
        try:
            loop.run_forever()
        finally:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        lc = self._cfg.listener
        self._no_data = asyncio.Event()
        self._no_data.set()
        base = _LMTPSession if lc.protocol == "lmtp" else _SMTPSession
        # RFC 5321 §4.5.3.1.6 caps lines at 1000 octets, but real mail breaks it
        # (malformed/ in the corpus: base64 on one line, HTML without breaks).
        # aiosmtpd would refuse such mail for good (500); we store it and let the
        # parser cope. The limit is also the read buffer of every connection
        # (commands included), hence 1 MiB rather than max_message_bytes.
        cls = type(base.__name__, (base,), {"line_length_limit": LONGEST_LINE})
        tls = _tls_context(self._cfg)
        # Looked up once: aiosmtpd would call getfqdn() (a DNS lookup) per session.
        hostname = lc.hostname or socket.getfqdn()

        def factory() -> SMTP:
            session = cls(
                self._handler,
                data_size_limit=lc.max_message_bytes,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=hostname,
                ident="mailtix",
                tls_context=tls,
                require_starttls=lc.require_tls,
                loop=loop,
            )
            session.listener = self
            self.sessions.add(session)
            return session

        return await loop.create_server(factory, host=lc.host, port=lc.port)

    async def _shutdown(self) -> None:
        self.closing = True
        assert self._server is not None and self._no_data is not None
        self._server.close()
        try:
            await asyncio.wait_for(self._no_data.wait(), self._drain_seconds)
        except TimeoutError:
            log.warning("closing %d sessions still in DATA", self._in_data)
        sessions = list(self.sessions)
        for s in sessions:
            _close(s)
        tasks = [s._handler_coroutine for s in sessions if s._handler_coroutine is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            # A TLS peer that never answers close_notify: cut it off.
            for s in sessions:
                if s.transport is not None:
                    s.transport.abort()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self._server.wait_closed()


def _close(session: Any) -> None:
    """Tell an idle session we are going (RFC 5321 §3.8), then close it."""
    transport = session.transport
    if transport is None or transport.is_closing():
        return
    transport.write(SHUTTING_DOWN.encode() + b"\r\n")
    transport.close()
