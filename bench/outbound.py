"""Outbound benchmark: composition cost and delivery rate to an SMTP sink.

Run: `.venv/bin/python bench/outbound.py` (options: --help). It measures

* composing a text+HTML reply: `EmailMessage` (policy.default) against the
  compat32 classes mailtix uses (render/mime.py), and a whole notification
  (Jinja2 render + compose);
* delivery: N outbox rows on a fresh SQLite database (or --db-url) sent by
  `send_pending` to an aiosmtpd sink that answers 250, at 1 and 4
  connections. The sink runs in its own process, so it has its own core.

End to end (SMTP in → acknowledgement delivered) needs the daemon: see
`end_to_end`, left for the daemon's owner to fill. It prints figures; it is
not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailtix import config as config_mod
from mailtix.outbound.sender import send_pending
from mailtix.outbound.smtp import SmtpTransport
from mailtix.render.mime import Address, Headers, compose
from mailtix.render.templates import Templates
from mailtix.store import outbox
from mailtix.store.db import Database

NOW = datetime.now(UTC)
TEXT = ("Bonjour Émile,\n\nWe received your message and opened ticket [Ticket #42].\n" * 12)
HTML = "<p>" + TEXT.replace("\n", "<br>\n") + "</p>"


# ------------------------------------------------------------- composition
def _with_email_message() -> bytes:
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = formataddr(("Support", "support@example.com"))
    m["To"] = formataddr(("Émile Zola", "emile@example.org"))
    m["Subject"] = "Re: [Ticket #42] Imprimante en feu"
    m["Message-ID"] = "<mailtix.42.abc@example.com>"
    m["In-Reply-To"] = "<c1@example.org>"
    m["References"] = "<c1@example.org> <mailtix.42.ack@example.com>"
    m["Date"] = format_datetime(NOW)
    m["Auto-Submitted"] = "auto-replied"
    m.set_content(TEXT)
    m.add_alternative(HTML, subtype="html")
    return m.as_bytes()


def _headers() -> Headers:
    return Headers(
        from_=Address("support@example.com", "Support"),
        to=(Address("emile@example.org", "Émile Zola"),),
        subject="Re: [Ticket #42] Imprimante en feu",
        message_id="<mailtix.42.abc@example.com>",
        date=NOW,
        reply_to=Address("support+42-abcdefghijklmnopqrstuvwx@example.com"),
        in_reply_to="<c1@example.org>",
        references=("<c1@example.org>", "<mailtix.42.ack@example.com>"),
        extra=(("X-Mailtix-Loop", "support@example.com"),),
    )


def _with_compat32() -> bytes:
    return compose(_headers(), TEXT, HTML)


def _whole_notification(templates: Templates) -> Callable[[], bytes]:
    context = {
        "ticket": {"id": 42, "tag": "[Ticket #42]", "subject": "Imprimante en feu",
                   "status": "new", "priority": "normal", "queue": "support"},
        "brand": "Support", "recipient_name": "Émile", "reply_address": "support+42-x@example.com",
        "author_name": "Émile", "author_email": "emile@example.org", "body": TEXT,
        "attachments": [], "automated": False, "marker": "-- reply above this line --",
    }

    def run() -> bytes:
        r = templates.render("agent_new", "fr", context)
        return compose(_headers(), r.text, r.html)

    return run


def _per_call_ms(fn: Callable[[], bytes], n: int) -> float:
    fn()
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - started) / n * 1000)
    return statistics.median(runs)


def bench_composition(n: int) -> None:
    """Print the median cost of composing one message each way."""
    print("composition (median of 5 runs, ms per message):")
    print(f"  EmailMessage, policy.default/SMTP   {_per_call_ms(_with_email_message, n):6.2f}")
    print(f"  compat32 MIMEMultipart (mailtix)    {_per_call_ms(_with_compat32, n):6.2f}")
    notification = _whole_notification(Templates())
    print(f"  Jinja2 render + compose (agent_new) {_per_call_ms(notification, n):6.2f}")


# ---------------------------------------------------------------- delivery
def _sink_process(conn: Connection) -> None:
    from tests.integration.smarthost import Smarthost

    with Smarthost() as sink:
        conn.send(sink.port)
        conn.recv()  # wait for "stop"
        conn.send(len(sink.received))


def _fill(db: Database, n: int, size: int) -> None:
    body = ("x" * 76 + "\n") * max(1, size // 77)
    with db.write() as s:
        for i in range(n):
            mid = f"<bench.{uuid.uuid4().hex}@example.com>"
            h = Headers(from_=Address("support@example.com"), to=(Address(f"c{i}@x.org"),),
                        subject=f"bench {i}", message_id=mid, date=NOW)
            outbox.enqueue(s, ticket_id=None, kind="bench", dedupe_key=mid, message_id=mid,
                           envelope_from="support@example.com", recipients=[f"c{i}@x.org"],
                           raw=compose(h, body), now=NOW)


def bench_delivery(n: int, size: int, db_url: str | None) -> None:
    """Print the delivery rate to a 250-only sink at 1 and 4 connections."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_sink_process, args=(child,), daemon=True)
    proc.start()
    port = parent.recv()
    print(f"delivery of {n} rows (~{size} B each) to an aiosmtpd sink in its own process:")
    try:
        for connections in (1, 4):
            with tempfile.TemporaryDirectory() as tmp:
                url = db_url or f"sqlite:///{tmp}/bench.db"
                cfg = config_mod.parse(
                    {
                        "database": {"url": url},
                        "queue": [{"name": "support", "addresses": ["support@example.com"]}],
                        "security": {"reply_secret": "bench-secret-0123456789"},
                        "outbound": {"transport": "smtp", "host": "127.0.0.1", "port": port,
                                     "connections": connections, "timeout": 10},
                    },
                    {}, Path(tmp),
                )
                db = Database(cfg.database.url)
                db.upgrade()
                _fill(db, n, size)
                transport = SmtpTransport(cfg.outbound)
                started = time.perf_counter()
                report = send_pending(db, cfg, transport, NOW)
                took = time.perf_counter() - started
                transport.close()
                db.dispose()
            each = took / max(1, report.sent) * 1000
            print(f"  {connections} connection(s): {report.sent} sent in {took:6.2f} s = "
                  f"{report.sent / took:7.0f} msg/s ({each:.2f} ms each)")
    finally:
        parent.send("stop")
        print(f"  sink accepted {parent.recv()} messages in all")
        proc.join(10)


def end_to_end() -> None:
    """SMTP in → acknowledgement delivered to the sink; to be written with the daemon."""
    raise NotImplementedError("needs mailtix.daemon; left for its owner")


def main() -> None:
    """Parse options and run the benchmarks."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="rows to deliver per run")
    ap.add_argument("--size", type=int, default=2000, help="approximate body bytes")
    ap.add_argument("--compose-n", type=int, default=300, help="messages per composition run")
    ap.add_argument("--db-url", help="a database URL instead of a temporary SQLite file")
    args = ap.parse_args()
    bench_composition(args.compose_n)
    bench_delivery(args.n, args.size, args.db_url)


if __name__ == "__main__":
    main()
