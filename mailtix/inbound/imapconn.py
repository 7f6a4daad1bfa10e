"""Opening an IMAP session for one `[[mailbox]]`: TLS, login, folders, backoff.

Everything that can go wrong here becomes a `MailboxError` with one clear
sentence naming the mailbox's server, so the poller logs one line per
failure and backs off; it never falls back to plaintext when TLS was asked.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import ssl
import subprocess
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailtix.config import MailboxConfig
from mailtix.errors import TemporaryError


class MailboxError(TemporaryError):
    """An IMAP mailbox cannot be used now: unreachable, refused, or dropped."""


class LoginFailed(MailboxError):
    """The server refused our credentials (a wrong password or an expired token)."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: base, 2 x base, 4 x base... up to cap seconds."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the failures-th consecutive failure (0-based)."""
        ceiling = min(self.cap, self.base * 2 ** min(failures, 32))
        # "Equal jitter": never less than half the step, so the backoff still
        # grows, but pollers of one server that failed together spread out.
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def where(box: MailboxConfig) -> str:
    """`user@host:port`, for log lines."""
    return f"{box.username} on {box.host}:{box.port}"


def tls_context(box: MailboxConfig) -> ssl.SSLContext:
    """A verifying client context (hostname and chain), trusting box.ca_file if given."""
    return ssl.create_default_context(cafile=str(box.ca_file) if box.ca_file else None)


def open_session(box: MailboxConfig, secrets: dict[str, str]) -> IMAPClient:
    """Connect with box.security, log in, and return the authenticated client."""
    try:
        client = IMAPClient(
            box.host,
            box.port,
            ssl=box.security == "tls",
            ssl_context=tls_context(box) if box.security == "tls" else None,
            timeout=box.timeout,
        )
    except ssl.SSLError as err:
        raise MailboxError(f"TLS with {box.host}:{box.port} failed: {err}") from err
    except OSError as err:
        raise MailboxError(f"cannot connect to {box.host}:{box.port}: {err}") from err
    try:
        if box.security == "starttls":
            _starttls(client, box)
        _keepalive(client.socket())
        _login(client, box, secrets)
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
    return client


def _starttls(client: IMAPClient, box: MailboxConfig) -> None:
    # RFC 3501 §6.2.1: never send credentials in clear when TLS was asked for.
    if not client.has_capability("STARTTLS"):
        raise MailboxError(f"{box.host}:{box.port} does not offer STARTTLS")
    try:
        client.starttls(tls_context(box))
    except (ssl.SSLError, OSError, IMAPClientError) as err:
        raise MailboxError(f"STARTTLS with {box.host}:{box.port} failed: {err}") from err


def _keepalive(sock: socket.socket) -> None:
    """Let the kernel notice a silently dead peer while we sit in IDLE for minutes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def _login(client: IMAPClient, box: MailboxConfig, secrets: dict[str, str]) -> None:
    if box.oauth2_token_env is None and box.oauth2_token_command is None:
        try:
            client.login(box.username, secrets.get(f"mailbox.{box.name}", ""))
        except LoginError as err:
            raise LoginFailed(f"login as {where(box)} refused: {_text(err)}") from err
        return
    try:
        client.oauth2_login(box.username, oauth2_token(box, secrets))
    except LoginError as err:
        if box.oauth2_token_command is None:
            raise LoginFailed(f"XOAUTH2 login as {where(box)} refused: {_text(err)}") from err
        first = err
    else:
        return
    # The server refused the token (most often: it expired). Ask the command
    # for a fresh one and try once more on this connection (RFC 7628 §3.2.2:
    # the failure reply of an expired token is "invalid_token", RFC 6750 §3.1).
    try:
        client.oauth2_login(box.username, oauth2_token(box, secrets))
    except LoginError as err:
        raise LoginFailed(
            f"XOAUTH2 login as {where(box)} refused, even with a refreshed token: {_text(err)}"
        ) from first


def oauth2_token(box: MailboxConfig, secrets: dict[str, str]) -> str:
    """An access token: from the environment (read at config load) or from the command."""
    if box.oauth2_token_command is None:
        return secrets.get(f"mailbox.{box.name}.oauth2", "")
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", box.oauth2_token_command],
            capture_output=True,
            timeout=box.timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise MailboxError(f"oauth2_token_command of mailbox {box.name} failed: {err}") from err
    out = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not out:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise MailboxError(
            f"oauth2_token_command of mailbox {box.name} exited {done.returncode} "
            f"with no token{': ' + detail[0] if detail else ''}"
        )
    if out.startswith("{"):  # a token endpoint's JSON reply, as oauth2l and curl print it
        with contextlib.suppress(ValueError, AttributeError):
            return str(json.loads(out).get("access_token") or out)
    return out.splitlines()[0].strip()


def ensure_folders(client: IMAPClient, box: MailboxConfig) -> None:
    """Create the polled, processed and oversize folders when they are missing."""
    for name in (box.folder, box.processed_folder, box.oversize_folder):
        if name is None or client.folder_exists(name):
            continue
        try:
            client.create_folder(name)
        except IMAPClientError:
            # Another poller (or a person) may have created it meanwhile.
            if not client.folder_exists(name):
                raise
        with contextlib.suppress(IMAPClientError):
            client.subscribe_folder(name)  # so that mail clients show it


def close_session(client: IMAPClient, *, polite: bool = True) -> None:
    """LOGOUT (if polite), else or if that fails just close the socket."""
    if polite:
        try:
            client.logout()
            return
        except Exception:  # the connection is being abandoned anyway
            pass
    with contextlib.suppress(Exception):
        client.shutdown()


def _text(err: BaseException) -> str:
    """A server reply as text (imapclient hands some over as repr'd bytes)."""
    msg = str(err)
    if msg.startswith(("b'", 'b"')):
        msg = msg[2:-1]
    return msg
