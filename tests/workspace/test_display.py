"""The presentation tags and filters (workspace/templatetags/corral_display.py),
rendered on their own: exact HTML, escaping, and the edge cases."""

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.template import Context, Template
from django.utils import timezone

from workspace.templatetags import corral_display
from workspace.templatetags.corral_display import diff_lines, lease_left

SHA = "0123456789abcdef0123456789abcdef01234567"
MOMENT = datetime(2024, 1, 2, 15, 4, 5, tzinfo=UTC)


def render(source: str, **context) -> str:
    return Template("{% load corral_display %}" + source).render(Context(context))


def thing(status: str, label: str, **fields) -> SimpleNamespace:
    """A duck-typed bead, session or submission."""
    return SimpleNamespace(status=status, get_status_display=lambda: label, **fields)


def bead(title: str = "Fix <it>", status: str = "closed") -> SimpleNamespace:
    return thing(
        status,
        status.replace("_", " "),
        id="app-1a2b",
        title=title,
        get_absolute_url=lambda: "/repos/app/#app-1a2b",
    )


def test_the_module_knows_no_app_above_the_bottom_layer():
    tree = ast.parse(Path(corral_display.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    above = {m for m in imported if m.split(".")[0] in {"beads", "agents", "knowledge", "corral"}}
    assert not above


def test_status_badge():
    sub = thing("awaiting_review", "awaiting review")
    html = render("{% status_badge sub %}|", sub=sub)
    assert html == '<span class="state awaiting_review">Awaiting review</span>|'
    html = render("{% status_badge sub data=True %}", sub=sub)
    expected = '<span class="state awaiting_review" data-status="awaiting_review">'
    assert html == expected + "Awaiting review</span>"
    assert render("{% status_badge x %}", x=thing('"><b>', "<b>")) == (
        '<span class="state &quot;&gt;&lt;b&gt;">&lt;b&gt;</span>'
    )


def test_gate_badge():
    result = SimpleNamespace(gate="check", outcome="fail", duration_ms=1234)
    assert render("{% gate_badge r %}|", r=result) == '<span class="gate fail">fail</span>|'
    assert render("{% gate_badge r timed=True %}|", r=result) == (
        '<span class="gate fail" data-gate="check" title="check: fail, 1234 ms">'
        "check <b>fail</b> <small>1234 ms</small></span>|"
    )


def test_bead_link():
    assert render("{% bead_link b %}|", b=bead()) == (
        '<a href="/repos/app/#app-1a2b"><code>app-1a2b</code></a>|'
    )
    assert render("{% bead_link b in_text=True %}|", b=bead(status="in_progress")) == (
        '<a class="bead-link" href="/repos/app/#app-1a2b" title="Fix &lt;it&gt; (in progress)">'
        "<code>app-1a2b</code></a>|"
    )


def test_sha():
    assert render("{% sha s %}|", s=SHA) == f'<code class="sha" title="{SHA}">{SHA[:12]}</code>|'
    assert render('{% sha s full=True dom_id="commit-sha" %}|', s=SHA) == (
        f'<code class="sha" id="commit-sha">{SHA}</code>|'
    )
    for empty in ("", None):
        assert render("{% sha s %}|", s=empty) == '<span class="muted">—</span>|'
    assert render("{{ s|short_sha }}|{{ none|short_sha }}|", s=SHA, none=None) == f"{SHA[:12]}||"


def test_when_says_how_long_ago_with_the_moment_in_full():
    five_ago = timezone.now() - timedelta(minutes=5, seconds=3)
    html = render("{% when t %}|", t=five_ago)
    assert html.startswith(f'<time datetime="{five_ago.isoformat()}" title="')
    assert html.endswith(">5\xa0minutes ago</time>|")
    html = render('{% when t fmt="Y-m-d H:i:s" %}|', t=MOMENT)
    assert html == (
        '<time datetime="2024-01-02T15:04:05+00:00" title="Jan. 2, 2024, 3:04 p.m.">'
        "2024-01-02 15:04:05</time>|"
    )


def test_when_reads_an_iso_string_and_passes_anything_else_through():
    # As git gives it, in the committer's zone: shown in the site's.
    html = render('{% when t fmt="H:i" %}', t="2024-01-02T17:04:05+02:00")
    assert (
        html
        == '<time datetime="2024-01-02T15:04:05+00:00" title="Jan. 2, 2024, 3:04 p.m.">15:04</time>'
    )
    assert render("{% when t %}|", t="not a <date>") == "not a &lt;date&gt;|"
    assert render("{% when t %}|", t="2024-13-45T99:00:00") == "2024-13-45T99:00:00|"
    assert render("{% when t %}|", t=None) == "|"


def test_lease_counts_down_in_minutes_and_seconds():
    now = MOMENT
    html = render("{% lease t now %}|", t=now + timedelta(seconds=90), now=now)
    assert html == (
        '<span class="lease" data-seconds="90" title="lease until Jan. 2, 2024, 3:05 p.m.">'
        "1:30</span>|"
    )
    html = render("{% lease t now %}", t=now - timedelta(seconds=5), now=now)
    assert html.startswith('<span class="lease expired" data-seconds="0"')
    assert html.endswith(">expired</span>")
    html = render("{% lease t %}", t=None)
    assert html == '<span class="lease" title="lease until —">no lease</span>'
    # Without `now`: the time of rendering.
    assert 'data-seconds="59"' in render("{% lease t %}", t=timezone.now() + timedelta(seconds=60))


def test_lease_left():
    assert lease_left(None, MOMENT) == (None, "no lease")
    assert lease_left(MOMENT, MOMENT) == (0, "expired")
    assert lease_left(MOMENT + timedelta(seconds=3601), MOMENT) == (3601, "60:01")


@pytest.mark.parametrize(
    "seconds, shown",
    [(0, "0:00"), (59, "0:59"), (60, "1:00"), (90.9, "1:30"), (3600, "60:00"), (-5, "0:00")]
    + [("75", "1:15"), (None, ""), ("soon", "")],
)
def test_mmss(seconds, shown):
    assert corral_display.mmss(seconds) == shown
    assert render("{{ s|mmss }}", s=seconds) == shown


def test_duration_ms_and_short_id():
    assert render(
        "{{ a|duration_ms }}|{{ b|duration_ms }}|{{ c|duration_ms }}", a=3, b=0, c="x"
    ) == ("3 ms|0 ms|")
    uuid = "3f2a9c1e-0000-4000-8000-000000000000"
    assert render("{{ u|short_id }}|{{ n|short_id }}|", u=uuid, n=None) == "3f2a9c1e||"


def test_time_bar():
    clock = {"limit": 1800, "used": 90, "left": 1710, "label": "28:30 left"}
    assert render("{% time_bar c %}|", c=clock) == (
        '<progress max="1800" value="90">90 s of 1800 s</progress> '
        '<span data-left="1710">28:30 left</span>|'
    )
    assert render("{% time_bar c ids=True %}|", c=clock) == (
        '<progress id="time-bar" max="1800" value="90" title="90 s of 1800 s">90 s of 1800 s'
        '</progress> <span id="time-left" data-left="1710">28:30 left</span>|'
    )


PATCH = """diff --git a/src/page.html b/src/page.html
index 1111111..2222222 100644
--- a/src/page.html
+++ b/src/page.html
@@ -1 +1,2 @@
 keep
-<b>old</b>
+<script>alert(1)</script>
\\ No newline at end of file
diff --git a/b.txt b/b.txt"""


def test_diff_lines_colour_by_hunk():
    kinds = [kind for kind, _ in diff_lines(PATCH.splitlines())]
    assert kinds == ["meta"] * 4 + ["hunk", "ctx", "del", "add", "meta", "meta"]


def test_the_diff_is_coloured_escaped_and_cut():
    html = render('{% diff p empty="Nothing." %}', p=PATCH)
    assert html.startswith('<pre class="diff"><code><span class="meta">diff --git a/src/page.html')
    assert '<span class="hunk">@@ -1 +1,2 @@</span>' in html
    assert '<span class="del">-&lt;b&gt;old&lt;/b&gt;</span>' in html
    assert '<span class="add">+&lt;script&gt;alert(1)&lt;/script&gt;</span>' in html
    assert "<script>" not in html and "cut after" not in html
    for empty in ("", None):  # a message from the context is escaped, a literal is not
        assert render("{% diff p empty=m %}", p=empty, m="Nothing <here>.") == (
            '<p class="empty">Nothing &lt;here&gt;.</p>'
        )
    assert render("{% diff p %}", p="") == '<p class="empty">The patch is empty.</p>'


def test_a_long_diff_is_cut(monkeypatch):
    monkeypatch.setattr(corral_display, "DIFF_LINES_SHOWN", 3)
    html = render("{% diff p %}", p=PATCH)
    assert html.count("<span ") == 3
    assert html.endswith('<p class="muted">The diff is cut after 3 lines.</p>')


def test_scope_and_polling():
    assert (
        render("{% scope s %}|", s=["src/**", "<x>"])
        == "<code>src/**</code> <code>&lt;x&gt;</code> |"
    )
    for empty in ([], None):
        assert render("{% scope s %}|", s=empty) == '<span class="muted">any</span>|'
    assert render('{% polling "Refreshes every 2 seconds" %}|') == (
        '<span class="polling" title="Refreshes every 2 seconds">live</span>|'
    )
