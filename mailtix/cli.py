"""The `mailtix` command line (SPEC §1).

`main` is one of mailtix's three catch-alls: a user error is one line on
stderr with an exit code from `errors.outcome_for`; a traceback only with
`--debug`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from mailtix import config as config_mod
from mailtix.config import Config
from mailtix.errors import ConfigError, MailtixError, UserError, outcome_for
from mailtix.store.db import Database

F = TypeVar("F", bound=Callable[..., Any])


def _now() -> datetime:
    return datetime.now(UTC)


class State:
    """What the group hands to its commands: where the config is, and how chatty to be."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.debug = False
        self.as_json = False
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config

    def database(self, *, upgrade: bool = False, create_missing: bool = False) -> Database:
        """The configured database; migrated first with upgrade, created if missing with
        create_missing; otherwise a missing schema is a UserError."""
        cfg = self.config()
        db = Database(cfg.database.url, busy_timeout=cfg.database.busy_timeout)
        if upgrade or (create_missing and not db.has_schema()):
            db.upgrade()
        elif not db.has_schema():
            db.dispose()
            raise UserError(
                "the database has no tables yet: run `mailtix db upgrade` (or start `mailtix run`)"
            )
        return db


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).config_path = value


def config_option(f: F) -> F:
    """--config on every command (SPEC §1), as well as on the group."""
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        expose_value=False,
        callback=_set_config,
        help="Config file (default: $MAILTIX_CONFIG, else ./mailtix.toml).",
    )(f)


@click.group()
@config_option
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """mailtix: a helpdesk run entirely by email."""
    state = ctx.ensure_object(State)
    state.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:  # schema checks on every start are not news
        logging.getLogger("alembic").setLevel(logging.WARNING)


pass_state = click.make_pass_decorator(State, ensure=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# ------------------------------------------------------------------ daemon
@cli.command()
@config_option
@pass_state
def run(state: State) -> None:
    """Run the daemon: listener, IMAP pollers, runner, sender; stops on SIGTERM/SIGINT."""
    from mailtix.daemon import Daemon

    cfg = state.config()
    daemon = Daemon(cfg)
    sys.exit(daemon.run_until_signalled())


@cli.command("check-config")
@config_option
@pass_state
def check_config(state: State) -> None:
    """Validate the config; print every problem with its key path."""
    try:
        cfg = state.config()
    except ConfigError as err:
        for path, message in err.problems:
            click.echo(f"{path or '(file)'}: {message}", err=True)
        sys.exit(outcome_for(err).exit_code)
    click.echo(
        f"ok: {len(cfg.queue)} queue(s), {len(cfg.agent)} agent(s), "
        f"{len(cfg.mailbox)} mailbox(es), database {cfg.database.url.split(':', 1)[0]}"
    )


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@config_option
@pass_state
def upgrade(state: State) -> None:
    """Apply schema migrations."""
    state.database(upgrade=True).dispose()
    click.echo("database is up to date")


# ----------------------------------------------------------------- ingest
@cli.command()
@config_option
@click.option("--queue", "queue", default=None, help="Queue to file the message in.")
@pass_state
def inject(state: State, queue: str | None) -> None:
    """Store one raw message from stdin (exit 0 stored, 75 try later, 65 not mail)."""
    from mailtix.inbound.inject import inject as do_inject

    raw = sys.stdin.buffer.read()
    cfg = state.config()
    # A fresh install may get mail before anyone ran `db upgrade`: create the
    # schema then, rather than exit 1 (which an MTA would take as a bounce).
    db = state.database(create_missing=True)
    try:
        stored = do_inject(db, cfg, raw, queue=queue, now=_now())
    finally:
        db.dispose()
    what = "duplicate of an item already stored" if stored.duplicate else f"item {stored.item_id}"
    click.echo(f"stored: {what}", err=True)


@cli.command("import")
@config_option
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--queue", default=None, help="Queue to file the messages in.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_state
def import_(state: State, path: Path, queue: str | None, no_progress: bool) -> None:
    """Store every message of an mbox file or a Maildir (idempotent)."""
    from mailtix.services.importer import import_path

    cfg = state.config()
    db = state.database(upgrade=True)
    try:
        report = import_path(db, cfg, path, queue=queue, now=_now(), progress=not no_progress)
    finally:
        db.dispose()
    click.echo(
        f"{report.total} message(s): {report.stored} stored, "
        f"{report.duplicates} already there, {len(report.skipped)} skipped"
    )
    for reason in report.skipped:
        click.echo(f"skipped: {reason}", err=True)


# ---------------------------------------------------------------- outbox
@cli.command("send-pending")
@config_option
@pass_state
def send_pending(state: State) -> None:
    """Deliver what is due in the outbox now, then exit."""
    from mailtix.outbound.sender import send_pending as deliver
    from mailtix.outbound.transport import transport_for

    cfg = state.config()
    db = state.database()
    transport = transport_for(cfg)
    try:
        report = deliver(db, cfg, transport, _now())
    finally:
        transport.close()
        db.dispose()
    click.echo(f"{report.sent} sent, {report.retried} to retry, {report.failed} failed")


@cli.command("run-jobs")
@config_option
@click.option(
    "--now",
    "now_iso",
    default=None,
    metavar="ISO8601",
    help="Run as of this time (default: now), e.g. 2026-11-23T09:00:00+01:00.",
)
@pass_state
def run_jobs(state: State, now_iso: str | None) -> None:
    """Run every job once as of NOW: the spool, the outbox, housekeeping; then exit."""
    from mailtix.outbound.sender import send_pending as deliver
    from mailtix.outbound.transport import transport_for
    from mailtix.runner import Runner
    from mailtix.services.periodic import JOBS

    now = _parse_now(now_iso)
    cfg = state.config()
    db = state.database(upgrade=True)
    runner = Runner(db, cfg, lambda: now)
    transport = transport_for(cfg)
    try:
        outcomes = runner.run_once()
        report = deliver(db, cfg, transport, now)
        jobs = {name: job(db, now) for name, job in JOBS.items()}
    finally:
        transport.close()
        runner.close()
        db.dispose()
    states = [o.state for o in outcomes]
    click.echo(
        f"spool: {states.count('done')} processed, {states.count('quarantined')} quarantined, "
        f"{states.count('failed')} to retry; outbox: {report.sent} sent, "
        f"{report.retried} to retry, {report.failed} failed"
    )
    for name, done in jobs.items():
        click.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in done.items()))


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return _now()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint="--now") from None
    if parsed.tzinfo is None:
        raise click.BadParameter(
            "give a UTC offset, e.g. 2026-11-23T09:00:00+00:00", param_hint="--now"
        )
    return parsed


# ---------------------------------------------------------------- tickets
@cli.command("tickets")
@config_option
@click.option("--status", default=None, help="Only tickets with this status.")
@click.option("--queue", default=None, help="Only tickets of this queue.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def tickets_(state: State, status: str | None, queue: str | None, as_json: bool) -> None:
    """List tickets, newest first."""
    from mailtix.services.views import list_tickets

    db = state.database()
    try:
        rows = list_tickets(db, status=status, queue=queue)
    finally:
        db.dispose()
    if as_json:
        _print_json(rows)
        return
    _table(
        ["ID", "STATUS", "PRIO", "QUEUE", "REQUESTER", "ASSIGNEE", "UPDATED", "SUBJECT"],
        [
            [
                str(r["id"]),
                r["status"],
                r["priority"],
                r["queue"],
                r["requester"],
                r["assignee"] or "-",
                (r["updated_at"] or "")[:16].replace("T", " "),
                r["subject"],
            ]
            for r in rows
        ],
    )


@cli.command()
@config_option
@click.argument("ticket_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def show(state: State, ticket_id: int, as_json: bool) -> None:
    """One ticket with its whole history."""
    from mailtix.services.views import ticket_detail

    db = state.database()
    try:
        t = ticket_detail(db, ticket_id)
    finally:
        db.dispose()
    if as_json:
        _print_json(t)
        return
    click.echo(f"#{t['id']} {t['subject']}")
    click.echo(
        f"status {t['status']} · priority {t['priority']} · type {t['type']} · queue {t['queue']}"
    )
    click.echo(f"requester {t['requester']} · assignee {t['assignee'] or '-'}")
    if len(t["participants"]) > 1:
        cc = ", ".join(p["email"] for p in t["participants"] if p["role"] == "cc")
        click.echo(f"cc {cc}")
    # In time order; at the same instant the "created" event comes first.
    history = [(m["at"], 1, "message", m) for m in t["messages"]]
    history += [(e["at"], 0 if e["kind"] == "created" else 2, "event", e) for e in t["events"]]
    for at, _rank, kind, item in sorted(history, key=lambda h: (h[0] or "", h[1])):
        stamp = (at or "")[:19].replace("T", " ")
        if kind == "event":
            detail = ", ".join(f"{k}={v}" for k, v in item["detail"].items())
            click.echo(f"\n{stamp}  [{item['kind']}] {item['actor']} {detail}".rstrip())
            continue
        internal = " (internal)" if item["internal"] else ""
        out = item["direction"] == "out"
        who = "→ " + ", ".join(item["to"]) if out else "← " + item["from"]
        click.echo(f"\n{stamp}  {who}{internal}: {item['subject']}")
        for name in item["attachments"]:
            click.echo(f"    [attachment] {name}")
        for line in item["body"].strip().splitlines():
            click.echo(f"    {line}")


# ------------------------------------------------------------- quarantine
@cli.group(invoke_without_command=True)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def quarantine(ctx: click.Context, as_json: bool) -> None:
    """Mail that could not be processed, with its reason (list, show ID, replay ID)."""
    ctx.ensure_object(State).as_json = as_json
    if ctx.invoked_subcommand is None:
        ctx.invoke(quarantine_list)


@quarantine.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def quarantine_list(state: State, as_json: bool = False) -> None:
    """List quarantined items."""
    from mailtix.services.views import list_quarantine

    db = state.database()
    try:
        rows = list_quarantine(db)
    finally:
        db.dispose()
    if as_json or state.as_json:
        _print_json(rows)
        return
    _table(
        ["ID", "RECEIVED", "SOURCE", "FROM", "TRIES", "REASON"],
        [
            [
                str(r["id"]),
                (r["received_at"] or "")[:19].replace("T", " "),
                r["source"],
                r["mail_from"] or "-",
                str(r["attempts"]),
                (r["reason"] or "")[:80],
            ]
            for r in rows
        ],
    )


@quarantine.command("show")
@config_option
@click.argument("item_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def quarantine_show(state: State, item_id: int, as_json: bool) -> None:
    """One quarantined item: its reason and its raw message."""
    from mailtix.services.views import quarantine_item

    db = state.database()
    try:
        summary, raw = quarantine_item(db, item_id)
    finally:
        db.dispose()
    if as_json or state.as_json:
        _print_json({**summary, "raw": raw.decode("utf-8", "backslashreplace")})
        return
    for key, value in summary.items():
        click.echo(f"{key}: {value}")
    click.echo("")
    sys.stdout.flush()
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()


@quarantine.command("replay")
@config_option
@click.argument("item_id", type=int)
@pass_state
def quarantine_replay(state: State, item_id: int) -> None:
    """Put a quarantined item back in line (the running daemon or run-jobs picks it up)."""
    from mailtix.services.views import replay

    db = state.database()
    try:
        replay(db, item_id)
    finally:
        db.dispose()
    click.echo(f"item {item_id} queued for processing again")


# ------------------------------------------------------------------ utils
def _table(header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        click.echo("(none)")
        return
    # Every column but the last is cut at 40 characters; the last (a subject
    # or a reason) is printed whole.
    widths = [min(max(len(r[i]) for r in [header, *rows]), 40) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(row, widths, strict=True)]
        cells[-1] = row[-1]
        click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one stderr line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="mailtix", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except ConfigError as err:
        for path, message in err.problems:
            click.echo(f"mailtix: config: {path + ': ' if path else ''}{message}", err=True)
        sys.exit(outcome_for(err).exit_code)
    except MailtixError as err:
        if debug:
            raise
        click.echo(f"mailtix: {err}", err=True)
        sys.exit(outcome_for(err).exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:
        if debug or os.environ.get("MAILTIX_DEBUG"):
            raise
        click.echo(
            f"mailtix: internal error: {type(err).__name__}: {err} (rerun with --debug)", err=True
        )
        sys.exit(outcome_for(err).exit_code)
