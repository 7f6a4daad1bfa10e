"""Ingest benchmark: how fast mailtix durably accepts mail, against aiosmtpd's ceiling.

Run: `.venv/bin/python bench/ingest.py` (options: --help). In one run it measures

* the ceiling: an aiosmtpd server whose DATA hook only returns 250;
* mailtix: its Listener and GroupCommitter on a fresh SQLite database in a
  temporary directory (or a throwaway PostgreSQL database with --db-url),
  with 0, 1k and 100k pre-existing spool items and tickets;
* optionally end to end: from the first message sent until every ticket
  exists, with whatever `start_pipeline` callable processes the spool
  (by default mailtix.runner.Runner when it is importable).

Clients run in a separate process (asyncio, pipelined MAIL/RCPT/DATA over
reused sessions) so the server process has its own core. Latency is measured
from the end of DATA (the final dot sent) to the 250, i.e. the durable-commit
wait. It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_database
from mailtix import config as config_mod
from mailtix.config import Config
from mailtix.core.fingerprint import dedupe_key
from mailtix.inbound.groupcommit import GroupCommitter
from mailtix.inbound.listener import Listener
from mailtix.store.db import Database
from mailtix.store.tables import SpoolItem, Ticket

RCPT = "support@example.com"


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ messages
def make_message(tag: str, n: int, size: int) -> bytes:
    """A distinct CRLF message of about size bytes, dot-stuffed and ready for DATA."""
    head = (
        f"From: Customer {n} <customer{n}@load.example>\r\n"
        f"To: {RCPT}\r\n"
        f"Subject: bench {tag} message {n}\r\n"
        f"Message-ID: <{tag}.{n}@load.example>\r\n"
        f"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = f"Line of message {n} in run {tag}: the printer is on fire again.".encode()
    body = b""
    while len(head) + len(body) < size:
        body += line[:76] + b"\r\n"
    return head + body


# ------------------------------------------------------------- the client
@dataclass
class Figures:
    """What one load run measured."""

    messages: int
    sessions: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


async def _session(
    host: str,
    port: int,
    msgs: list[bytes],
    lat: list[float],
    ready: asyncio.Queue[None],
    go: asyncio.Event,
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    failures = 0
    try:
        await _reply(reader)
        writer.write(b"EHLO bench.example\r\n")
        await _reply(reader)
        ready.put_nowait(None)
        await go.wait()
        for raw in msgs:
            # Pipelined (RFC 2920), as an MTA does it.
            writer.write(f"MAIL FROM:<bench@load.example>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode())
            codes = [await _reply(reader) for _ in range(3)]
            if codes != [250, 250, 354]:
                raise RuntimeError(f"unexpected replies {codes}")
            writer.write(raw + b".\r\n")
            t0 = time.perf_counter()
            code = await _reply(reader)
            lat.append(time.perf_counter() - t0)
            failures += code != 250
        writer.write(b"QUIT\r\n")
        await _reply(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    return failures


async def _load(host: str, port: int, tag: str, n: int, sessions: int, size: int) -> Figures:
    msgs = [make_message(tag, i, size) for i in range(n)]
    lat: list[float] = []
    ready: asyncio.Queue[None] = asyncio.Queue()
    go = asyncio.Event()
    tasks = [
        asyncio.create_task(_session(host, port, msgs[s::sessions], lat, ready, go))
        for s in range(sessions)
    ]
    for _ in range(sessions):
        await ready.get()
    started = time.perf_counter()
    go.set()
    failures = sum(await asyncio.gather(*tasks))
    seconds = time.perf_counter() - started
    q = statistics.quantiles(lat, n=100)
    return Figures(n, sessions, seconds, q[49] * 1000, q[98] * 1000, failures)


def client_run(host: str, port: int, tag: str, n: int, sessions: int, size: int) -> Figures:
    """Send n messages over sessions reused sessions (runs in the client process)."""
    return asyncio.run(_load(host, port, tag, n, sessions, size))


# ------------------------------------------------------------- the servers
class _NullHandler:
    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        return "250 OK"


@contextmanager
def null_server() -> Iterator[tuple[str, int]]:
    """The ceiling: aiosmtpd with a DATA hook that returns 250 at once."""
    loop = asyncio.new_event_loop()
    bound: Future[asyncio.Server] = Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        make = lambda: SMTP(_NullHandler(), hostname="bench", loop=loop)  # noqa: E731
        bound.set_result(loop.run_until_complete(loop.create_server(make, "127.0.0.1", 0)))
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    server = bound.result()
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def bench_config(db_url: str, workdir: Path, workers: int = 1) -> Config:
    """A minimal mailtix config on db_url with a listener on a free port."""
    data = {
        "database": {"url": db_url},
        "listener": {"host": "127.0.0.1", "port": 0, "hostname": "bench"},
        "outbound": {"transport": "maildir", "maildir": str(workdir / "sent")},
        "queue": [{"name": "support", "addresses": [RCPT]}],
        "security": {"reply_secret": "bench-secret-0123456789"},
        "spool": {"workers": workers},
        "tickets": {"attachment_dir": str(workdir / "attachments")},
    }
    return config_mod.parse(data, {}, workdir)


@contextmanager
def mailtix_server(
    cfg: Config,
    db: Database,
    on_commit: Callable[[], None] | None = None,
    child_process: bool = True,
) -> Iterator[tuple[tuple[str, int], GroupCommitter]]:
    """mailtix's Listener and GroupCommitter on db."""
    committer = GroupCommitter(db, utcnow, on_commit=on_commit, child_process=child_process)
    committer.start()
    listener = Listener(cfg, committer)
    try:
        yield listener.start(), committer
    finally:
        listener.stop()
        committer.stop()


# ------------------------------------------------------------- databases
def prefill(db: Database, count: int, size: int) -> None:
    """Insert count processed spool items and count tickets, in bulk."""
    now = utcnow()
    chunk = 5000
    with db.engine.begin() as conn:
        for start in range(0, count, chunk):
            tickets, items = [], []
            for n in range(start, min(count, start + chunk)):
                raw = make_message("prefill", n, size)
                key, msgid = dedupe_key(raw)
                tickets.append(
                    {
                        "subject": f"old ticket {n}",
                        "status": "open",
                        "priority": "normal",
                        "type": "incident",
                        "queue": "support",
                        "requester": f"old{n}@load.example",
                        "requester_name": "",
                        "tags": "[]",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                items.append(
                    {
                        "received_at": now,
                        "source": "smtp",
                        "mail_from": "",
                        "rcpt_to": "[]",
                        "queue": "support",
                        "raw": raw,
                        "size": len(raw),
                        "message_id": msgid,
                        "dedupe_key": key,
                        "state": "done",
                        "attempts": 1,
                        "processed_at": now,
                        "ticket_id": n + 1,
                    }
                )
            conn.execute(insert(Ticket.__table__), tickets)  # type: ignore[attr-defined]
            conn.execute(insert(SpoolItem.__table__), items)  # type: ignore[attr-defined]
    if db.is_postgres:
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def ticket_count(db: Database) -> int:
    """How many tickets exist."""
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Ticket)) or 0)


# ------------------------------------------------ the end-to-end hook
@dataclass
class Pipeline:
    """Something processing the spool in the background."""

    wake: Callable[[], None]  # called after each group commit
    stop: Callable[[], None]


PipelineStarter = Callable[[Database, Config], Pipeline]


def runner_pipeline(db: Database, cfg: Config) -> Pipeline:
    """mailtix.runner.Runner on a thread (the daemon's arrangement)."""
    from mailtix.runner import Runner

    runner = Runner(db, cfg, utcnow)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        runner.wake.set()
        thread.join()
        runner.close()

    return Pipeline(wake=runner.wake.set, stop=halt)


def measure_end_to_end(
    start_pipeline: PipelineStarter,
    run: Callable[[str, int, str, int, int], Figures],
    db_url: str,
    workdir: Path,
    n: int,
    sessions: int,
    workers: int,
    done: Callable[[Database], int] = ticket_count,
    timeout: float = 600.0,
) -> tuple[float, Figures]:
    """Seconds from the first message sent until done(db) reaches n, and the acceptance figures."""
    cfg = bench_config(db_url, workdir, workers)
    db = Database(db_url)
    db.upgrade()
    pipeline = start_pipeline(db, cfg)
    try:
        with mailtix_server(cfg, db, on_commit=pipeline.wake) as ((host, port), _):
            started = time.perf_counter()
            figures = run(host, port, f"e2e{uuid.uuid4().hex[:6]}", n, sessions)
            deadline = started + timeout
            while done(db) < n:  # a benchmark may poll: this is a measurement, not a test
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"only {done(db)} of {n} tickets after {timeout} s")
                time.sleep(0.02)
            return time.perf_counter() - started, figures
    finally:
        pipeline.stop()
        db.dispose()


# ------------------------------------------------------------------ main
@dataclass
class Contender:
    """A server under load: where it listens, and its committer if it is mailtix."""

    label: str
    host: str
    port: int
    committer: GroupCommitter | None = None


def _median(values: list[float]) -> float:
    return statistics.median(values)


def compare(
    run: Callable[[str, int, str, int, int], Figures],
    contenders: list[Contender],
    n: int,
    sessions: int,
    repeat: int,
) -> None:
    """Run each contender repeat times, interleaved; print medians and ratios to the first."""
    # Interleaving matters: the machine is shared and its speed drifts within
    # seconds, so each ratio compares runs made side by side.
    figures: dict[str, list[Figures]] = {c.label: [] for c in contenders}
    msgs_per_commit: dict[str, list[float]] = {c.label: [] for c in contenders}
    for _ in range(repeat):
        for c in contenders:
            before = c.committer.batches if c.committer else 0
            figures[c.label].append(run(c.host, c.port, uuid.uuid4().hex[:8], n, sessions))
            if c.committer:
                msgs_per_commit[c.label].append(n / max(1, c.committer.batches - before))
    base = figures[contenders[0].label]
    for c in contenders:
        runs = figures[c.label]
        ratios = [f.rate / b.rate for f, b in zip(runs, base, strict=True)]
        per_commit = msgs_per_commit[c.label]
        failures = sum(f.failures for f in runs)
        print(
            f"{c.label:<34} {sessions:>4} {_median([f.rate for f in runs]):>8.0f} "
            f"{_median([f.p50_ms for f in runs]):>7.1f} {_median([f.p99_ms for f in runs]):>7.1f} "
            f"{_median(ratios):>6.2f} "
            + (f"{_median(per_commit):>6.1f}" if per_commit else f"{'-':>6}")
            + (f"  ({failures} replies not 250!)" if failures else ""),
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    p.add_argument("--size", type=int, default=2048, help="bytes per message (default 2048)")
    p.add_argument("--sessions", default="10,50", help="session counts (default 10,50)")
    p.add_argument("--prefill", default="0,1000,100000", help="pre-existing items/tickets")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; medians are shown")
    p.add_argument(
        "--db-url",
        default=None,
        help="PostgreSQL URL of a role that may CREATE DATABASE (default: SQLite in a temp dir)",
    )
    p.add_argument(
        "--thread-store",
        action="store_true",
        help="also measure GroupCommitter(child_process=False): the commit on the listener's GIL",
    )
    p.add_argument(
        "--e2e",
        type=int,
        default=0,
        metavar="N",
        help="also measure end to end with N messages (mailtix.runner)",
    )
    p.add_argument("--workers", type=int, default=1, help="spool.workers for --e2e")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sessions = [int(s) for s in args.sessions.split(",")]
    prefills = [int(s) for s in args.prefill.split(",")]
    where = "PostgreSQL" if args.db_url else "SQLite (WAL, synchronous=FULL)"
    print(
        f"{args.messages} messages of ~{args.size} B per run over reused sessions, "
        f"median of {args.repeat} interleaved runs; database: {where}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"{'server':<34} {'sess':>4} {'msg/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'ratio':>6} {'msg/commit':>6}"
    )
    ctx = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(1, mp_context=ctx) as clients,
        tempfile.TemporaryDirectory() as tmp,
        null_server() as (null_host, null_port),
    ):
        workdir = Path(tmp)

        def run(host: str, port: int, tag: str, n: int, s: int) -> Figures:
            return clients.submit(client_run, host, port, tag, n, s, args.size).result()

        run(null_host, null_port, "warmup", 200, 10)  # start the client process
        ceiling = Contender("aiosmtpd, 250 at once (ceiling)", null_host, null_port)
        for count in prefills:
            with fresh_database(args.db_url, workdir) as url:
                db = Database(url)
                db.upgrade()
                t0 = time.perf_counter()
                prefill(db, count, args.size)
                if count:
                    print(
                        f"-- {count} items + tickets already stored "
                        f"(bulk insert: {time.perf_counter() - t0:.1f} s)"
                    )
                cfg = bench_config(url, workdir)
                with ExitStack() as stack:
                    contenders = [ceiling]
                    modes = [True, False] if args.thread_store else [True]
                    for child in modes:
                        (host, port), committer = stack.enter_context(
                            mailtix_server(cfg, db, child_process=child)
                        )
                        label = f"mailtix, {count} existing" + ("" if child else ", thread")
                        contenders.append(Contender(label, host, port, committer))
                    for c in contenders[1:]:
                        run(c.host, c.port, "warmup" + uuid.uuid4().hex[:6], 50, 5)
                    for s in sessions:
                        compare(run, contenders, args.messages, s, args.repeat)
                db.dispose()
        if args.e2e:
            with fresh_database(args.db_url, workdir) as url:
                s = max(sessions)
                base = run(null_host, null_port, "e2e-ceiling", args.e2e, s)
                seconds, f = measure_end_to_end(
                    runner_pipeline, run, url, workdir, args.e2e, s, args.workers
                )
                rate = args.e2e / seconds
                print(
                    f"end to end (runner, {args.workers} worker(s)), {args.e2e} messages, "
                    f"{s} sessions: every ticket exists after {seconds:.2f} s = {rate:.0f} "
                    f"msg/s = {rate / base.rate:.2f} x ceiling "
                    f"(acceptance {f.rate:.0f} msg/s = {f.rate / base.rate:.2f} x)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
