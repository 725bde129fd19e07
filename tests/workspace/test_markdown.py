"""Markdown that people and agents write, as pages show it: nothing that runs,
links only to http(s), mailto and relative addresses, images as links, code
highlighted with its indentation kept, headings under the page's own."""

import json
import re
from html import unescape
from pathlib import Path

from django.template import Context, Template
from pygments.styles import get_style_by_name
from pygments.token import Whitespace

from tests.factories import unsafe_markup
from workspace import markdown

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = (Path(__file__).parent / "data" / "hostile.md").read_text()
MARKER = "corral-xss"
ANCHOR = re.compile(r"<a ([^>]*)>")


def pre_text(html):
    """The text of the first <pre>, as a reader sees it."""
    block = re.search(r"<pre[^>]*>(.*?)</pre>", html, re.DOTALL).group(1)
    return unescape(re.sub(r"<[^>]+>", "", block))


def test_hostile_markdown_renders_nothing_that_runs():
    html = markdown.render(HOSTILE)
    assert unsafe_markup(html, MARKER) == []
    assert "<script" not in html and "<img" not in html and "<svg" not in html
    assert "<!--" not in html and "<b style" not in html
    # Said as text, not swallowed: a reader sees what was attempted.
    assert "&lt;script&gt;alert('corral-xss')&lt;/script&gt;" in html
    assert "&lt;!-- corral-xss" in html


def test_links_keep_http_https_mailto_and_relative_addresses_only_with_nofollow():
    text = (
        "[a](https://example.com/x) [b](http://example.com) [c](mailto:ops@example.com) "
        "[d](/beads/api-1/) [e](javascript:alert(1)) [f](ftp://example.com/f) "
        "[g](data:text/html,hi) <https://example.com/auto>"
    )
    anchors = ANCHOR.findall(markdown.render(text))
    hrefs = [re.search(r'href="([^"]*)"', a).group(1) for a in anchors if "href=" in a]
    assert hrefs == [
        "https://example.com/x",
        "http://example.com",
        "mailto:ops@example.com",
        "/beads/api-1/",
        "https://example.com/auto",
    ]
    assert all('rel="nofollow noopener"' in a for a in anchors)


def test_an_image_is_a_link_to_it_and_never_drawn():
    html = markdown.render("![the new logo](https://example.com/logo.png)")
    assert "<img" not in html
    assert '<a href="https://example.com/logo.png" rel="nofollow noopener">the new logo</a>' in html


def test_the_demo_beads_python_keeps_its_indentation_and_is_highlighted():
    beads = [json.loads(line) for line in (ROOT / "demo" / "beads.jsonl").open()]
    description = next(b["description"] for b in beads if b["id"] == "api-ohlv")
    html = markdown.render(description)
    assert "corral write" not in html  # the fence's info string is not shown
    blocks = re.findall(r'<pre class="highlight"><code>(.*?)</code></pre>', html, re.DOTALL)
    written = unescape(re.sub(r"<[^>]+>", "", blocks[-1]))  # tests/test_errors.py
    assert (
        "class JsonErrorTests(unittest.TestCase):\n"
        "    def setUp(self):\n"
        "        items_app.store = ItemStore()\n"
    ) in written
    assert '<span class="k">def</span>' in blocks[-1]  # a keyword, by class: no inline style


def test_a_fence_in_no_language_it_knows_keeps_its_text_as_it_is():
    html = markdown.render("```corral fail\n  two spaces <b>in</b>\n```\n\n    indented <i>\n")
    assert pre_text(html) == "  two spaces <b>in</b>\n"
    assert "&lt;b&gt;" in html and "<pre><code>indented &lt;i&gt;\n</code></pre>" in html


def test_headings_sit_below_the_pages_own_and_tables_render():
    html = markdown.render("# One\n\n## Two\n\n###### Six\n\n| a | b |\n|--:|---|\n| 1 | 2 |\n")
    assert "<h3>One</h3>" in html and "<h4>Two</h4>" in html and "<h6>Six</h6>" in html
    assert "<h1" not in html and "<h2" not in html
    assert "<th>a</th>" in html and "<td>2</td>" in html  # alignment is a style: dropped


def test_the_template_filter_marks_clean_html_safe():
    out = Template("{% load corral_display %}{{ text|markdown }}").render(
        Context({"text": "**bold** <b>raw</b>"})
    )
    assert out == "<p><strong>bold</strong> &lt;b&gt;raw&lt;/b&gt;</p>\n"


def test_the_highlight_stylesheet_is_the_one_pygments_makes():
    # After a Pygments upgrade: .venv/bin/python -c "from workspace.markdown import
    # highlight_css; print(highlight_css(), end='')" > static/pygments.css
    assert (ROOT / "static" / "pygments.css").read_text() == markdown.highlight_css()


def luminance(colour):
    rgb = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_highlighted_colour_reads_at_4_5_to_1_on_its_ground():
    for name in (markdown.LIGHT_STYLE, markdown.DARK_STYLE):
        style = get_style_by_name(name)
        ground = style.background_color
        for token, looks in style:
            if looks["color"] and token not in Whitespace:  # whitespace shows no colour
                ratio = contrast(f"#{looks['color']}", ground)
                assert ratio >= 4.5, f"{name}: {token} #{looks['color']} on {ground}: {ratio:.2f}"
