"""Load and validate `mailtix.toml` (SPEC §2).

Every section is a pydantic model that forbids unknown keys, so a typo is an
error with its key path. Secrets are given inline (`password = "…"`) or by
the name of an environment variable (`password_env = "VAR"`); `Secret`
resolves either. The environment is read here, at load time, and nowhere else.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mailtix.errors import ConfigError

DEFAULT_CONFIG = "mailtix.toml"
Language = Literal["en", "fr"]
Security = Literal["tls", "starttls", "none"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_secret(inline: str | None, env_name: str | None, env: Mapping[str, str]) -> str | None:
    if inline is not None:
        return inline
    if env_name is not None:
        return env.get(env_name)
    return None


class DatabaseConfig(_Section):
    url: str = "sqlite:///var/mailtix.db"
    # Seconds a SQLite writer waits for the lock before giving up (busy_timeout).
    busy_timeout: float = Field(default=10.0, gt=0)


class ListenerConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    protocol: Literal["smtp", "lmtp"] = "smtp"
    max_message_bytes: int = Field(default=26_214_400, gt=0)
    hostname: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_tls: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> ListenerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        return self


class MailboxConfig(_Section):
    name: str
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    security: Security = "tls"
    ca_file: Path | None = None
    username: str
    password: str | None = None
    password_env: str | None = None
    oauth2_token_env: str | None = None
    oauth2_token_command: str | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    oversize_folder: str | None = None
    queue: str
    poll_interval: float = Field(default=60.0, gt=0)
    idle: bool = True
    batch_size: int = Field(default=50, ge=1, le=1000)
    timeout: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_credential(self) -> MailboxConfig:
        given = [
            k
            for k in ("password", "password_env", "oauth2_token_env", "oauth2_token_command")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of password, password_env, oauth2_token_env, "
                f"oauth2_token_command (got {', '.join(given) or 'none'})"
            )
        return self


class OutboundConfig(_Section):
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("var/sent")
    from_address: str = "support@example.com"
    from_name: str = "Support"
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Security = "none"
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    # Envelope sender (MAIL FROM); "{token}" is replaced per message for VERP.
    envelope_sender: str | None = None
    connections: int = Field(default=1, ge=1, le=32)
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)


class QueueConfig(_Section):
    name: str
    addresses: list[str] = Field(min_length=1)
    language: Language = "en"


class AgentConfig(_Section):
    email: str
    name: str = ""
    queues: list[str] = Field(default_factory=list)
    language: Language = "en"


class ManagerConfig(_Section):
    email: str
    name: str = ""
    language: Language = "en"


class TicketsConfig(_Section):
    tag_prefix: str = Field(default="Ticket", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    attachment_dir: Path = Path("var/attachments")
    max_attachment_bytes: int = Field(default=26_214_400, gt=0)
    max_attachments: int = Field(default=50, ge=0)


class SecurityConfig(_Section):
    reply_secret: str | None = None
    reply_secret_env: str | None = None
    # authserv-id of the Authentication-Results headers we trust (RFC 8601 §5).
    trusted_authserv_ids: list[str] = Field(default_factory=list)


class SpoolConfig(_Section):
    max_attempts: int = Field(default=3, ge=1)
    # Wait before the 2nd attempt; doubled before each further one.
    retry_seconds: float = Field(default=30.0, ge=0)
    workers: int = Field(default=1, ge=1, le=16)
    poll_interval: float = Field(default=1.0, gt=0)


class TemplatesConfig(_Section):
    directory: Path | None = None
    default_language: Language = "en"


class LimitsConfig(_Section):
    auto_replies_per_address_per_hour: int = Field(default=10, ge=0)
    auto_replies_per_ticket_per_hour: int = Field(default=5, ge=0)
    # An address that writes again within this many seconds of our last automatic
    # mail to it is a machine answering us: no automatic reply (the loop breaker).
    loop_window_seconds: int = Field(default=300, ge=0)
    # Hard bounces (5.x.x) from one address before mailtix stops writing to it.
    hard_bounces_before_suppression: int = Field(default=3, ge=1)


class Config(_Section):
    database: DatabaseConfig = DatabaseConfig()
    listener: ListenerConfig = ListenerConfig()
    mailbox: list[MailboxConfig] = Field(default_factory=list)
    outbound: OutboundConfig = OutboundConfig()
    queue: Annotated[list[QueueConfig], Field(min_length=1)]
    agent: list[AgentConfig] = Field(default_factory=list)
    manager: list[ManagerConfig] = Field(default_factory=list)
    tickets: TicketsConfig = TicketsConfig()
    security: SecurityConfig = SecurityConfig()
    spool: SpoolConfig = SpoolConfig()
    templates: TemplatesConfig = TemplatesConfig()
    limits: LimitsConfig = LimitsConfig()
    # Resolved secrets, filled by load(); never read from the file itself.
    secrets: dict[str, str] = Field(default_factory=dict, exclude=True)

    # -- derived views -------------------------------------------------
    def queue_for_address(self, address: str) -> QueueConfig | None:
        """The queue an envelope recipient belongs to, plus-addressing included."""
        local, _, domain = address.strip().lower().rpartition("@")
        base = local.split("+", 1)[0] + "@" + domain
        for q in self.queue:
            if base in (a.lower() for a in q.addresses):
                return q
        return None

    def queue_named(self, name: str) -> QueueConfig:
        """The queue called name; KeyError if there is none."""
        for q in self.queue:
            if q.name == name:
                return q
        raise KeyError(name)

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address mailtix sends from or receives on, lower-cased."""
        addrs = {a.lower() for q in self.queue for a in q.addresses}
        addrs.add(self.outbound.from_address.lower())
        return frozenset(addrs)

    @property
    def agent_emails(self) -> frozenset[str]:
        return frozenset(a.email.lower() for a in self.agent)

    def agent_by_email(self, email: str) -> AgentConfig | None:
        """The configured agent with this address, if any."""
        email = email.lower()
        return next((a for a in self.agent if a.email.lower() == email), None)

    @property
    def reply_secret(self) -> bytes:
        """The HMAC key of signed reply addresses."""
        return self.secrets["reply_secret"].encode()


def _cross_reference_problems(cfg: Config) -> list[tuple[str, str]]:
    """Names that must be unique or must exist elsewhere in the file, each with its path."""
    problems: list[tuple[str, str]] = []
    names = [q.name for q in cfg.queue]
    for i, q in enumerate(cfg.queue):
        if names.index(q.name) != i:
            problems.append((f"queue[{i}].name", f"queue name {q.name!r} is used twice"))
    for i, agent in enumerate(cfg.agent):
        for q in agent.queues:
            if q not in names:
                problems.append((f"agent[{i}].queues", f"unknown queue {q!r}"))
    boxes = [b.name for b in cfg.mailbox]
    for i, box in enumerate(cfg.mailbox):
        if boxes.index(box.name) != i:
            problems.append((f"mailbox[{i}].name", f"mailbox names must be unique: {box.name}"))
        if box.queue not in names:
            problems.append((f"mailbox[{i}].queue", f"unknown queue {box.queue!r}"))
    return problems


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(data: Mapping[str, object], env: Mapping[str, str], base: Path) -> Config:
    """Validate data (a parsed TOML document); raise ConfigError listing every problem.

    Relative paths are resolved against base (the config file's folder).
    """
    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as exc:
        problems = [(_loc(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        raise ConfigError(problems) from None
    problems = _cross_reference_problems(cfg)
    secrets: dict[str, str] = {}

    def need(path: str, inline: str | None, env_name: str | None, key: str) -> None:
        value = _env_secret(inline, env_name, env)
        if env_name is not None and value is None:
            problems.append((path + "_env", f"environment variable {env_name} is not set"))
        if value is not None:
            secrets[key] = value

    sec = cfg.security
    if sec.reply_secret is None and sec.reply_secret_env is None:
        problems.append(("security.reply_secret", "a reply_secret or reply_secret_env is required"))
    need("security.reply_secret", sec.reply_secret, sec.reply_secret_env, "reply_secret")
    out = cfg.outbound
    need("outbound.password", out.password, out.password_env, "outbound.password")
    for i, box in enumerate(cfg.mailbox):
        need(f"mailbox[{i}].password", box.password, box.password_env, f"mailbox.{box.name}")
        need(f"mailbox[{i}].oauth2_token", None, box.oauth2_token_env, f"mailbox.{box.name}.oauth2")
    if problems:
        raise ConfigError(problems)
    return _resolve_paths(cfg, base).model_copy(update={"secrets": secrets})


def _resolve_paths(cfg: Config, base: Path) -> Config:
    def abs_(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    url = cfg.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            url = "sqlite:///" + str(base / rel)
    updates = {
        "database": cfg.database.model_copy(update={"url": url}),
        "listener": cfg.listener.model_copy(
            update={
                "tls_cert": abs_(cfg.listener.tls_cert) or cfg.listener.tls_cert,
                "tls_key": abs_(cfg.listener.tls_key) or cfg.listener.tls_key,
            }
        ),
        "mailbox": [
            box.model_copy(update={"ca_file": abs_(box.ca_file) or box.ca_file})
            for box in cfg.mailbox
        ],
        "outbound": cfg.outbound.model_copy(
            update={
                "maildir": abs_(cfg.outbound.maildir) or cfg.outbound.maildir,
                "ca_file": abs_(cfg.outbound.ca_file) or cfg.outbound.ca_file,
            }
        ),
        "tickets": cfg.tickets.model_copy(
            update={
                "attachment_dir": abs_(cfg.tickets.attachment_dir) or cfg.tickets.attachment_dir
            }
        ),
        "templates": cfg.templates.model_copy(
            update={"directory": abs_(cfg.templates.directory) or cfg.templates.directory}
        ),
    }
    return cfg.model_copy(update=updates)


def load(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file (default: $MAILTIX_CONFIG or ./mailtix.toml)."""
    env = os.environ if env is None else env
    path = Path(path or env.get("MAILTIX_CONFIG") or DEFAULT_CONFIG)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([("", f"config file not found: {path}")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"{path}: not valid TOML: {exc}")]) from None
    return parse(data, env, path.resolve().parent)
