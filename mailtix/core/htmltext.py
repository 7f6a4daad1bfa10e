"""Turn an HTML mail body into readable plain text.

Built on inscriptis (Apache-2.0), which lays out tables and lists the way a
reader expects and drops script/style content. Its lxml parser silently gives
up on documents nested deeper than libxml2's limit (~255 levels, as in some
malformed and spam mails), returning nothing; then we fall back to the
stdlib's tolerant HTMLParser, which just collects the text.
"""

from __future__ import annotations

from html.parser import HTMLParser

from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from lxml.etree import LxmlError

# Link targets are kept ("[text](url)"): an agent answering a customer needs them.
_CONFIG = ParserConfig(display_links=True)
# Elements whose content is never shown to a reader.
_HIDDEN = frozenset({"script", "style", "head", "title", "template"})
_BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table"})


class _TextCollector(HTMLParser):
    """Collects visible text, one line per block element; never raises on bad markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _fallback(html: str) -> str:
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = (" ".join(line.split()) for line in "".join(collector.parts).splitlines())
    return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> str:
    """The readable text of an HTML document or fragment; "" when it shows nothing."""
    if not html.strip():
        return ""
    try:
        text = get_text(html, _CONFIG)
    except (LxmlError, ValueError):  # lxml refuses some input outright; the fallback copes
        text = ""
    if not text.strip():
        text = _fallback(html)
    # Trailing spaces are layout padding from table cells, not content.
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
