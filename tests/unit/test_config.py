"""Configuration: the shipped files parse, and every problem is named by its key path."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailtix import config
from mailtix.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_repository_config_parses_with_embedded_defaults() -> None:
    """mailtix.toml works as it is: SQLite under var/, 2525, a Maildir."""
    cfg = config.load(REPO / "mailtix.toml", env={})
    assert cfg.database.url == f"sqlite:///{REPO / 'var/mailtix.db'}"
    assert (cfg.listener.host, cfg.listener.port) == ("127.0.0.1", 2525)
    assert cfg.outbound.transport == "maildir" and cfg.outbound.maildir == REPO / "var/sent"


def test_example_config_documents_every_section_and_parses() -> None:
    """config/mailtix.example.toml parses (with its env secrets set) and covers every section."""
    env = {
        "MAILTIX_IMAP_PASSWORD": "x",
        "MAILTIX_SMTP_PASSWORD": "y",
        "MAILTIX_REPLY_SECRET": "z" * 20,
    }
    path = REPO / "config/mailtix.example.toml"
    cfg = config.load(path, env=env)
    assert cfg.secrets["mailbox.support-imap"] == "x"
    documented = set(tomllib.loads(path.read_text()))
    assert documented == set(config.Config.model_fields) - {"secrets"}


def test_unknown_keys_and_bad_values_are_reported_with_their_paths() -> None:
    """Every problem is listed, each with its key path."""
    data = {
        "listener": {"port": 99999, "colour": "blue"},
        "queue": [{"name": "support", "addresses": ["s@x.org"]}],
        "agent": [{"email": "a@x.org", "queues": ["nope"]}],
    }
    with pytest.raises(ConfigError) as exc:
        config.parse(data, {}, Path("/tmp"))
    paths = [p for p, _ in exc.value.problems]
    assert "listener.port" in paths and "listener.colour" in paths


def test_missing_secret_env_is_an_error() -> None:
    """A *_env naming an unset variable is a problem at that key."""
    data = {
        "queue": [{"name": "support", "addresses": ["s@x.org"]}],
        "security": {"reply_secret_env": "NOT_SET_ANYWHERE"},
    }
    with pytest.raises(ConfigError) as exc:
        config.parse(data, {}, Path("/tmp"))
    assert exc.value.problems == [
        ("security.reply_secret_env", "environment variable NOT_SET_ANYWHERE is not set")
    ]


def test_queue_lookup_accepts_plus_addressing_any_case() -> None:
    """support+anything@ belongs to the support queue; others to none."""
    cfg = config.parse(
        {
            "queue": [{"name": "support", "addresses": ["Support@Example.com"]}],
            "security": {"reply_secret": "s"},
        },
        {},
        Path("/tmp"),
    )
    assert cfg.queue_for_address("SUPPORT+t42-abc@example.com").name == "support"  # type: ignore[union-attr]
    assert cfg.queue_for_address("other@example.com") is None


def _with_mailboxes(*boxes: dict[str, object]) -> dict[str, object]:
    return {
        "queue": [{"name": "support", "addresses": ["s@x.org"]}],
        "security": {"reply_secret": "s"},
        "mailbox": list(boxes),
    }


BOX = {"name": "m", "host": "imap.x.org", "username": "u", "password": "p", "queue": "support"}


def test_relative_paths_are_relative_to_the_config_file() -> None:
    """ca_file, TLS files and directories resolve against the config's folder."""
    cfg = config.parse(_with_mailboxes({**BOX, "ca_file": "certs/ca.pem"}), {}, Path("/etc/mx"))
    assert cfg.mailbox[0].ca_file == Path("/etc/mx/certs/ca.pem")
    assert cfg.tickets.attachment_dir == Path("/etc/mx/var/attachments")


def test_mailbox_names_must_be_unique() -> None:
    """Two mailboxes with one name would share a position in the database."""
    with pytest.raises(ConfigError) as exc:
        config.parse(_with_mailboxes(BOX, {**BOX, "host": "other"}), {}, Path("/tmp"))
    assert "mailbox names must be unique: m" in str(exc.value)


def test_every_cross_reference_and_secret_problem_is_listed() -> None:
    """Unknown queues and unset secrets are all reported, each at its own path."""
    data = {
        "queue": [{"name": "support", "addresses": ["s@x.org"]}],
        "agent": [
            {"email": "a@x.org", "queues": ["nope"]},
            {"email": "b@x.org", "queues": ["gone"]},
        ],
        "mailbox": [{**BOX, "queue": "elsewhere", "password": None, "password_env": "NO_PW"}],
        "security": {"reply_secret_env": "NO_SECRET"},
    }
    with pytest.raises(ConfigError) as exc:
        config.parse(data, {}, Path("/tmp"))
    paths = [p for p, _ in exc.value.problems]
    assert paths == [
        "agent[0].queues",
        "agent[1].queues",
        "mailbox[0].queue",
        "security.reply_secret_env",
        "mailbox[0].password_env",
    ]
