"""Markdown that people and agents wrote (descriptions, comments, learnings,
handoffs), as HTML a page may show.

Agents are untrusted and so is what they write: raw HTML in the Markdown is
shown as text (markdown-it's `html` is off), and the HTML markdown-it makes
is cleaned again by nh3 with a short list of tags, so no script, event
handler, style or comment reaches a page. Links keep only http(s), mailto and
relative addresses and get rel="nofollow noopener". Images become links to
them: the CSP would block a remote image anyway, and one would tell its host
who reads the page. Headings move two levels down (a `#` is an h3), under the
page's own h1 and h2. Fenced code is highlighted by Pygments with classes
only (the CSP allows no inline style): its colours are static/pygments.css,
made by `highlight_css()`.
"""

import re
from collections.abc import Sequence
from functools import cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight as pygmentize
from pygments.formatters.html import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

HEADING_SHIFT = 2  # a Markdown h1 sits under the page's h1 and its section's h2
LIGHT_STYLE, DARK_STYLE = "default", "github-dark"
# The grounds highlighted code sits on (the styles' own, the page's panel and
# code blocks, a diff's added and removed lines: static/corral.css): each
# colour is moved toward black (light) or white (dark) until it reads at 4.5:1
# on every one of them, as WCAG AA asks of text.
LIGHT_GROUNDS = ("#f8f8f8", "#ffffff", "#f4f6f8", "#e3f3e8", "#fdeeed")
DARK_GROUNDS = ("#0d1117", "#1c2226", "#22292e", "#173424", "#3d1c19")
CONTRAST = 4.5
COLOUR = re.compile(r"(?<=[ ;{]color: )#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
HIGHLIGHT = "highlight"  # the class of a highlighted block, as static/pygments.css has it

TAGS = {
    *("p", "br", "hr", "blockquote", "ul", "ol", "li", "pre", "code", "span"),
    *("em", "strong", "s", "a", "h3", "h4", "h5", "h6"),
    *("table", "thead", "tbody", "tr", "th", "td"),
}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
# Only what Pygments writes: a token's class on a span, the block's on a pre.
CLASSES = {"span": set(STANDARD_TYPES.values()) - {""}, "pre": {HIGHLIGHT}}
SCHEMES = {"http", "https", "mailto"}
REL = "nofollow noopener"


def lexer_for(lang: str, attrs: str, code: str) -> Lexer | None:
    """The lexer a fence names (```python), else the one its last word's file
    name implies (the demo's ```corral write tests/test_x.py), else none."""
    try:
        return get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        pass
    words = attrs.split()
    try:
        return get_lexer_for_filename(words[-1], code) if words else None
    except ClassNotFound:
        return None


def highlighted(code: str, lang: str, attrs: str) -> str:
    """A fence's code as Pygments' spans in a <pre>, or "" for markdown-it to
    escape it as it is (no lexer fits)."""
    lexer = lexer_for(lang, attrs, code)
    if lexer is None:
        return ""
    spans = pygmentize(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="{HIGHLIGHT}"><code>{spans}</code></pre>'


def image_as_link(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env)
    return f'<a href="{escapeHtml(src)}">{escapeHtml(alt or src)}</a>'


@cache
def parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": highlighted})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", image_as_link)
    return md


@cache
def cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=TAGS,
        attributes=ATTRIBUTES,
        allowed_classes=CLASSES,
        url_schemes=SCHEMES,
        link_rel=REL,
        strip_comments=True,
    )


def shift_headings(tokens: list[Token]) -> None:
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + HEADING_SHIFT, 6)}"


def render(text: str) -> str:
    """Markdown as clean HTML (safe to mark safe in a template)."""
    md = parser()
    tokens = md.parse(text or "")
    shift_headings(tokens)
    return cleaner().clean(md.renderer.render(tokens, md.options, {}))


def highlight_css() -> str:
    """static/pygments.css: the light style, and the dark one when the system is dark."""
    light = HtmlFormatter(style=LIGHT_STYLE).get_style_defs(f".{HIGHLIGHT}")
    dark = HtmlFormatter(style=DARK_STYLE).get_style_defs(f".{HIGHLIGHT}")
    rules = [
        legible(line, LIGHT_GROUNDS, (0, 0, 0))
        for line in light.splitlines()
        if line.startswith(f".{HIGHLIGHT}")
    ]
    dark_rules = [
        "  " + legible(line, DARK_GROUNDS, (255, 255, 255))
        for line in dark.splitlines()
        if line.startswith(f".{HIGHLIGHT}")
    ]
    return "\n".join(
        [
            "/* Made by workspace.markdown.highlight_css() from Pygments' styles "
            f"{LIGHT_STYLE} and {DARK_STYLE}, colours moved to {CONTRAST}:1 on their grounds. */",
            *rules,
            "@media (prefers-color-scheme: dark) {",
            *dark_rules,
            "}",
            "",
        ]
    )


def legible(rule: str, grounds: Sequence[str], toward: tuple[int, int, int]) -> str:
    """The rule with its text colour moved toward `toward` until it reads on every ground."""

    def fix(match: re.Match[str]) -> str:
        rgb = rgb_of(match.group(1))
        while min(contrast(rgb, rgb_of(g[1:])) for g in grounds) < CONTRAST:
            rgb = tuple(round(c + (t - c) * 0.05) for c, t in zip(rgb, toward, strict=True))
        return "#" + "".join(f"{c:02x}" for c in rgb)

    return COLOUR.sub(fix, rule)


def rgb_of(hex_colour: str) -> tuple[int, ...]:
    if len(hex_colour) == 3:
        hex_colour = "".join(c * 2 for c in hex_colour)
    return tuple(int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))


def contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """WCAG's contrast ratio of two sRGB colours."""

    def luminance(rgb: tuple[int, ...]) -> float:
        linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)
