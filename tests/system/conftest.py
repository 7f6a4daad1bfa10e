"""Run the real `mailtix` command: a config file on disk, processes started and stopped here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MAILTIX = [sys.executable, "-m", "mailtix"]


def write_config(tmp_path: Path, db_url: str, **extra: str) -> Path:
    """A config file for a daemon on a free port, outbound to a Maildir in tmp_path."""
    text = f"""
[database]
url = "{db_url}"
busy_timeout = {extra.get("busy_timeout", "10.0")}

[listener]
host = "127.0.0.1"
port = 0
protocol = "{extra.get("protocol", "smtp")}"

[outbound]
transport = "maildir"
maildir = "{tmp_path / "sent"}"
from_address = "support@example.com"

[tickets]
attachment_dir = "{tmp_path / "attachments"}"

[spool]
poll_interval = 0.2

[security]
reply_secret = "system-test-secret-42"

[[queue]]
name = "support"
addresses = ["support@example.com"]

[[agent]]
email = "alice@example.com"
name = "Alice"
queues = ["support"]
"""
    path = tmp_path / "mailtix.toml"
    path.write_text(text)
    return path


def cli(
    config: Path, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run `mailtix --config config ARGS` and return the finished process."""
    return subprocess.run(
        [*MAILTIX, "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def cli_json(config: Path, *args: str) -> Any:
    done = cli(config, *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll condition until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class DaemonProcess:
    """`mailtix run` in a subprocess, with the port it bound read from its log."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log_fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*MAILTIX, "--config", str(config), "run"],
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
        match = wait_for(self._bound, timeout=30, what="the daemon to listen")
        self.port = int(match.group(1))

    def _bound(self) -> re.Match[str] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited early:\n{self.output()}")
        return re.search(r"listening for \w+ on 127\.0\.0\.1:(\d+)", self.output())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log_fh.close()


@pytest.fixture
def daemon_factory() -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        d = DaemonProcess(config)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
