"""Make received HTML safe to store and to show again: an allow-list, on nh3 (ammonia).

Nothing active survives: no script, style sheet, frame, object, embed or form;
no event-handler attributes; only http(s), mailto and tel links; no id or
class (DOM clobbering, borrowed page styles). Inline styles keep a list of
layout and typography properties, none of which can load a URL. Images may
be remote (http/https), inline parts (cid:) or small raster data: URLs —
not data:image/svg+xml, which is a document that can carry script.
Every link gets rel="noopener noreferrer".
"""

from __future__ import annotations

import re

import nh3

# Elements removed together with their content: code, styling and embedded
# documents, whose text would otherwise leak into the page.
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "title", "template", "noscript", "iframe", "frame", "frameset",
     "object", "embed", "applet", "svg", "math", "xml", "textarea", "select", "button"}
)
# nh3's default allow-list (semantic HTML, tables, images) plus what old mail
# clients still write (<font>, <big>, <tfoot>). No form, input, base, link, meta.
_TAGS = frozenset((nh3.ALLOWED_TAGS | {"font", "big", "tfoot"}) - _DROP_WITH_CONTENT)
_PRESENTATION = {"style", "title", "dir", "lang", "align", "valign", "width", "height",
                 "bgcolor", "border", "cellpadding", "cellspacing", "colspan", "rowspan"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": _PRESENTATION,
    "a": {"href", "hreflang", "title"},
    "img": {"src", "alt", "title", "width", "height", "border", "align"},
    "font": {"color", "face", "size"},
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid", "data"}
# Properties that lay out or colour text; none of them takes a url().
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "font-variant", "text-align", "text-decoration", "text-indent",
    "text-transform", "line-height", "letter-spacing", "word-spacing", "white-space",
    "vertical-align", "direction", "margin", "margin-top", "margin-right", "margin-bottom",
    "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
    "padding-left", "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-collapse", "border-spacing",
    "width", "height", "max-width", "min-width", "list-style-type", "table-layout",
}
_RASTER_DATA = re.compile(r"^data:image/(?:png|gif|jpeg|jpg|webp|bmp);base64,[A-Za-z0-9+/=\s]*$",
                          re.IGNORECASE)
# Old IE evaluated CSS expression(); url() and @import load remote content.
_ACTIVE_CSS = re.compile(r"expression\s*\(|url\s*\(|@import|javascript:|behavior\s*:",
                         re.IGNORECASE)


def sanitize_html(html: str) -> str:
    """html with everything active removed (allow-list on nh3); safe to store and re-send."""
    return nh3.clean(
        html,
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes=_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,  # Outlook's <!--[if mso]> blocks hold markup too
        filter_style_properties=_STYLE_PROPERTIES,
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Second look at each kept attribute: data:/cid: only as an image, no active CSS."""
    lowered = value.strip().lower()
    if lowered.startswith(("data:", "cid:")):
        if tag != "img" or attribute != "src":
            return None
        if lowered.startswith("data:") and not _RASTER_DATA.match(value.strip()):
            return None
    if attribute == "style" and _ACTIVE_CSS.search(value):
        return None
    return value
