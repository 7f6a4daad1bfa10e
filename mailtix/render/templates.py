"""Jinja2 templates of outgoing mail: text and HTML per kind, per language.

Layout: `<dir>/<lang>/<kind>.txt.j2` and `<kind>.html.j2`, plus an optional
one-line `<kind>.subject.j2`. A `[templates] directory` from the config is
searched first, file by file, so a site can override one template and keep
the rest. StrictUndefined turns a misspelt variable into an error at render
time instead of a silently empty sentence; HTML templates, and only those,
are autoescaped, so customer text can never become markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
)

# The built-in templates live at the repository root (templates/en, templates/fr).
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "templates"
LANGUAGES = ("en", "fr")
KINDS = ("ack", "answer", "agent_new", "agent_reply", "resolved", "closed", "delivery_failed")


@dataclass(frozen=True)
class Rendered:
    """One mail's rendered parts; subject is None when the kind has no subject template."""

    text: str
    html: str
    subject: str | None


def _autoescape(name: str | None) -> bool:
    return bool(name and name.endswith(".html.j2"))


class Templates:
    """The template set of one configuration (override directory first, then built-in)."""

    def __init__(self, override: Path | None = None, default_language: str = "en") -> None:
        loaders: list[BaseLoader] = []
        if override is not None:
            loaders.append(FileSystemLoader(str(override)))
        loaders.append(FileSystemLoader(str(BUILTIN_DIR)))
        self.default_language = default_language
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # Templates are read once per process: restart mailtix after editing
            # overrides (saves a stat() of every file on every mail).
            auto_reload=False,
        )
        self._subjects: dict[str, Template | None] = {}

    def language(self, wanted: str | None) -> str:
        """wanted if we have templates for it, else the configured default."""
        if wanted in LANGUAGES:
            return str(wanted)
        return self.default_language

    def render(self, kind: str, language: str | None, context: Mapping[str, Any]) -> Rendered:
        """Render kind in language (falling back to the default) with context."""
        lang = self.language(language)
        ctx = dict(context, language=lang)
        text = self.env.get_template(f"{lang}/{kind}.txt.j2").render(ctx)
        html = self.env.get_template(f"{lang}/{kind}.html.j2").render(ctx)
        subject_tpl = self._subject_template(f"{lang}/{kind}.subject.j2")
        subject = " ".join(subject_tpl.render(ctx).split()) if subject_tpl else None
        return Rendered(text=text.strip() + "\n", html=html, subject=subject)

    def _subject_template(self, name: str) -> Template | None:
        """The optional subject template; its absence is remembered too."""
        if name not in self._subjects:
            try:
                self._subjects[name] = self.env.get_template(name)
            except TemplateNotFound:
                self._subjects[name] = None
        return self._subjects[name]


@lru_cache(maxsize=8)
def templates_for(override: Path | None, default_language: str) -> Templates:
    """A cached Templates per (directory, language): Jinja compiles each file once."""
    return Templates(override, default_language)
