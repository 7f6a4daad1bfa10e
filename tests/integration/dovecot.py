"""A real Dovecot for the tests: one server per session, one fresh account per test.

Used as a pytest plugin (`tests/integration/conftest.py` registers it) and as
a plain module by `bench/imap.py`. The server runs in the foreground from a
temp dir with the settings `../shared/INFRA.md` checked on these machines:
root-owned internal processes, `nobody` for login, uid 65534 for mail, no
auth-failure delay, and a static passdb that lets any `tmp-<x>` user log in
with `TMP_PASSWORD` (or the same string as an XOAUTH2 token) and get an empty
mailbox. Listeners: plain IMAP (STARTTLS offered, plaintext login allowed),
implicit-TLS IMAP and LMTP on 127.0.0.1, plus plain IMAP on 127.0.0.2 whose
sessions advertise no MOVE; ports are found by binding port 0.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.conftest import need

TMP_PASSWORD = "tmp-secret"
MAIL_UID = 65534  # first_valid_uid: mail processes may not run as root

_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
default_internal_user = root
default_internal_group = root
default_login_user = nobody
first_valid_uid = {uid}
auth_failure_delay = 0
auth_mechanisms = plain login xoauth2
disable_plaintext_auth = no
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
mail_location = maildir:{root}/mail/%n
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = static
  args = password={password}
  username_filter = tmp-*
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imap_nomove {{
    address = 127.0.0.2
    port = {nomove_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
# A server without MOVE (RFC 6851) or MULTIAPPEND: the same store, seen
# through 127.0.0.2, for the COPY + \\Deleted + UID EXPUNGE fallback.
local 127.0.0.2 {{
  protocol imap {{
    imap_capability = IMAP4rev1 IDLE UIDPLUS
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_greeting(port: int, deadline: float) -> None:
    """Wait for the `* OK` greeting on port (Dovecot is ready in about 50 ms)."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Dovecot did not greet on port {port}")
        time.sleep(0.01)


def _children(pid: int) -> list[int]:
    """The pids whose parent is pid (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _terminate(pids: set[int]) -> None:
    """SIGTERM pids still alive, then SIGKILL whatever is left after 5 s."""
    alive = [p for p in pids if _alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.02)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie, reparented to a PID 1 that never reaps, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class DovecotServer:
    """A Dovecot running from root (a 0755 temp dir) until stop()."""

    root: Path
    imap_port: int = 0
    imaps_port: int = 0
    lmtp_port: int = 0
    nomove_port: int = 0  # plain IMAP on 127.0.0.2, without the MOVE capability
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, root: Path) -> DovecotServer:
        """Write the config and a self-signed certificate for 127.0.0.1 under root."""
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # the imap processes run as nobody and must traverse it
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(exist_ok=True)
        os.chown(root / "mail", MAIL_UID, MAIL_UID)
        server = cls(root, _free_port(), _free_port(), _free_port(), _free_port("127.0.0.2"))
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
            check=True, capture_output=True,
        )  # fmt: skip
        server.conf.write_text(
            _CONF.format(
                root=root, uid=MAIL_UID, password=TMP_PASSWORD, imap_port=server.imap_port,
                imaps_port=server.imaps_port, lmtp_port=server.lmtp_port,
                nomove_port=server.nomove_port,
            )
        )  # fmt: skip
        return server

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def cert(self) -> Path:
        """The self-signed certificate: the CA file a TLS client must trust."""
        return self.root / "cert.pem"

    def start(self) -> None:
        """Run `dovecot -F` and wait for its greeting."""
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_greeting(self.imap_port, time.monotonic() + 10)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"Dovecot did not start; see {self.root / 'dovecot.log'}") from None

    def stop(self) -> None:
        """SIGTERM the server and its session processes; wait for them (1 to 2.5 s)."""
        if self.proc is None:
            return
        children = set(_children(self.proc.pid))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            # It still forks sessions while it shuts down: keep collecting them.
            deadline = time.monotonic() + 15
            while self.proc.poll() is None and time.monotonic() < deadline:
                children.update(_children(self.proc.pid))
                time.sleep(0.01)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.proc = None
        # An imap process in IDLE outlives the master (it only notices at its
        # next command), so a "restart" would keep its connection: end it too.
        _terminate(children)

    def restart(self) -> None:
        """Stop and start again on the same ports and mail store."""
        self.stop()
        self.start()

    def new_user(self) -> str:
        """A fresh account name; its mailbox is empty until something is delivered."""
        return f"tmp-{uuid.uuid4().hex[:10]}"

    def connect(self, user: str) -> IMAPClient:
        """A logged-in imapclient over the plain listener (close it with logout())."""
        client = IMAPClient("127.0.0.1", self.imap_port, ssl=False, timeout=30)
        client.login(user, TMP_PASSWORD)
        return client

    def append(self, user: str, messages: Iterable[bytes], folder: str = "INBOX") -> None:
        """Put messages into folder, many per command (MULTIAPPEND, RFC 3502)."""
        client = self.connect(user)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            batch: list[bytes] = []
            for raw in messages:
                batch.append(raw)
                if len(batch) == 200:
                    client.multiappend(folder, batch)
                    batch = []
            if batch:
                client.multiappend(folder, batch)
        finally:
            client.logout()

    def deliver(self, user: str, raw: bytes, mail_from: str = "sender@example.org") -> None:
        """Deliver raw to user over LMTP, as an MTA would (Dovecot adds Delivered-To)."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail(mail_from, [user], raw)

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        """The UIDs in folder ([] when the folder does not exist)."""
        client = self.connect(user)
        try:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search(["ALL"]))
        finally:
            client.logout()

    def bodies(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in folder, in UID order."""
        client = self.connect(user)
        try:
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search(["ALL"]))
            data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[u][b"BODY[]"] for u in uids]
        finally:
            client.logout()

    def sessions_ended(self, user: str) -> list[str]:
        """Dovecot's own "Disconnected" log lines for user's IMAP sessions (with counters)."""
        log = (self.root / "dovecot.log").read_text(errors="replace")
        return [
            line for line in log.splitlines() if f"imap({user})" in line and "Disconnected" in line
        ]

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        """Change folder's UIDVALIDITY as a server rebuild would (`doveadm mailbox update`)."""
        subprocess.run(
            ["doveadm", "-c", str(self.conf), "mailbox", "update", "-u", user,
             "--uid-validity", str(value), folder],
            check=True, capture_output=True,
        )  # fmt: skip


def make_message(n: int, size: int = 0, to: str = "support@example.com") -> bytes:
    """A small RFC 5322 message numbered n, padded to about size bytes."""
    body = f"Message number {n}.\r\n".encode()
    if size > len(body):
        line = b"x" * 76 + b"\r\n"
        body += line * ((size - len(body)) // len(line))
    return (
        f"From: Customer {n} <customer{n}@example.org>\r\n"
        f"To: {to}\r\n"
        f"Subject: Question {n}\r\n"
        f"Message-ID: <q{n}.{uuid.uuid4().hex}@example.org>\r\n"
        "Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
        "\r\n"
    ).encode() + body


def start_server(root: Path | None = None) -> DovecotServer:
    """Create and start a server under root (a new temp dir by default)."""
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="mailtix-dovecot-"))
    server = DovecotServer.create(root)
    server.start()
    return server


# ---------------------------------------------------------------- fixtures
def _missing_tools() -> list[str]:
    return [tool for tool in ("dovecot", "doveadm", "openssl") if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer | None]:
    """One Dovecot for the whole session (it stops in 1 to 2.5 s, so never per test)."""
    if _missing_tools():
        yield None  # the `dovecot` fixture skips (or fails under CI) per test
        return
    # A short root: Dovecot's socket paths must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="mtx-dc-"))
    try:
        server = start_server(root)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_server: DovecotServer | None) -> DovecotServer:
    """The session's Dovecot, started again if a test stopped it."""
    missing = _missing_tools()
    need(not missing, f"{', '.join(missing)} not installed (make system-deps)")
    assert dovecot_server is not None
    if dovecot_server.proc is None or dovecot_server.proc.poll() is not None:
        dovecot_server.start()
    return dovecot_server


@pytest.fixture
def imap_user(dovecot: DovecotServer) -> str:
    """A fresh `tmp-<x>` account on the session's Dovecot."""
    return dovecot.new_user()
