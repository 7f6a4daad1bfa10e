"""Outbound benchmark: composition cost and delivery rate to an SMTP sink.

Run: `.venv/bin/python bench/outbound.py` (options: --help). It measures

* composing a text+HTML reply: `EmailMessage` (policy.default) against
  mailtix's own composer (render/mime.py), and a whole notification
  (Jinja2 render + compose);
* delivery: N outbox rows on a fresh SQLite database (or --db-url) sent by
  `send_pending` to an aiosmtpd sink that answers 250, at 1 and 4
  connections. The sink runs in its own process, so it has its own core.

* end to end (`--e2e N`, default 1000): the daemon in this process, N
  customer mails over 4 SMTP sessions, until every acknowledgement and agent
  notice has reached the sink.

It prints figures; it is not a test.
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


def _with_mailtix() -> bytes:
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
    print(f"  mailtix render.mime.compose         {_per_call_ms(_with_mailtix, n):6.2f}")
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


def _counting_sink(conn: Connection) -> None:
    from tests.integration.smarthost import Smarthost

    with Smarthost() as sink:
        conn.send(sink.port)
        while conn.recv() == "count":
            conn.send(len(sink.received))


def _customer_mail(n: int, size: int) -> bytes:
    body = ("Our printer is on fire, please help. " * 2 + "\r\n") * max(1, size // 76)
    return (
        f"From: Customer {n} <c{n}@customer.example>\r\nTo: support@example.com\r\n"
        f"Subject: Printer {n} on fire\r\nMessage-ID: <e2e.{n}.{uuid.uuid4().hex}@customer>\r\n"
        f"Date: {format_datetime(NOW)}\r\n\r\n{body}"
    ).encode()


def end_to_end(n: int, sessions: int, size: int, db_url: str | None) -> None:
    """SMTP in → acknowledgement (and agent notice) delivered to a sink: the daemon's rate."""
    import smtplib
    import threading

    from mailtix.daemon import Daemon

    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_counting_sink, args=(child,), daemon=True)
    proc.start()
    port = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_mod.parse(
            {
                "database": {"url": db_url or f"sqlite:///{tmp}/e2e.db"},
                "listener": {"port": 0},
                "queue": [{"name": "support", "addresses": ["support@example.com"]}],
                "agent": [{"email": "alice@example.com", "queues": ["support"]}],
                "security": {"reply_secret": "bench-secret-0123456789"},
                "outbound": {"transport": "smtp", "host": "127.0.0.1", "port": port,
                             "connections": 2, "timeout": 10},
                "limits": {"auto_replies_per_address_per_hour": 1000},
            },
            {}, Path(tmp),
        )
        daemon = Daemon(cfg)
        daemon.start()
        assert daemon.address is not None
        host, lport = daemon.address
        per = n // sessions

        def client(k: int) -> None:
            with smtplib.SMTP(host, lport, timeout=30) as smtp:
                for i in range(k * per, (k + 1) * per):
                    smtp.sendmail(f"c{i}@customer.example", ["support@example.com"],
                                  _customer_mail(i, size))

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        accepted = time.perf_counter() - started
        want = 2 * per * sessions  # an acknowledgement and an agent notice per ticket
        got = 0
        while got < want and time.perf_counter() - started < 600:
            parent.send("count")
            got = parent.recv()
            time.sleep(0.05)  # polling the sink's counter, not hiding a race
        took = time.perf_counter() - started
        daemon.stopping.set()
        daemon.stop()
    parent.send("stop")
    proc.join(10)
    total = per * sessions
    print(f"end to end, {total} customer mails over {sessions} SMTP sessions "
          f"(SQLite unless --db-url; 1 agent):")
    print(f"  all {total} accepted (250) in {accepted:6.2f} s = {total / accepted:7.0f} msg/s")
    print(f"  all {got} notifications delivered in {took:6.2f} s = "
          f"{total / took:7.0f} tickets/s end to end")


def main() -> None:
    """Parse options and run the benchmarks."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="rows to deliver per run")
    ap.add_argument("--size", type=int, default=2000, help="approximate body bytes")
    ap.add_argument("--compose-n", type=int, default=300, help="messages per composition run")
    ap.add_argument("--db-url", help="a database URL instead of a temporary SQLite file")
    ap.add_argument("--e2e", type=int, default=1000, help="customer mails end to end (0: skip)")
    args = ap.parse_args()
    bench_composition(args.compose_n)
    bench_delivery(args.n, args.size, args.db_url)
    if args.e2e:
        end_to_end(args.e2e, 4, args.size, args.db_url)


if __name__ == "__main__":
    main()
