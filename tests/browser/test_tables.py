"""Every table's rows match its headings, on every page: the demo is run to
its end (`manage.py demo --run`), then Chromium walks every page linked from
the overview, and in each <table> every row of the body and the foot spans
as many columns (colspan and rowspan counted) as the heading row, and as its
<colgroup> when it has one."""

from datetime import timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import Resolver404, resolve
from django.utils import timezone

from agents.models import Session
from agents.models.usage import Counts, TokenUsage
from beads.models import Bead
from tests.browser.conftest import log_in
from workspace import roles

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PER_ROUTE = 2  # pages visited of each route (two beads, two sessions, ...)
# Linked, but not HTML pages: a download, the log's text and its htmx part.
NOT_PAGES = {"beads-export", "session-log-text", "session-log"}
# A table's shape, as the browser laid it out: each row's width in columns.
SHAPES = """() => [...document.querySelectorAll("table")].map((table) => {
  const widths = (rows) => {
    let carried = [];  // cells spanning down from rows above: [rows left, columns]
    return rows.map((row) => {
      const cells = [...row.cells];
      const width = carried.reduce((n, [, cols]) => n + cols, 0)
        + cells.reduce((n, cell) => n + cell.colSpan, 0);
      carried = carried.map(([left, cols]) => [left - 1, cols]).filter(([left]) => left > 0)
        .concat(cells.filter((c) => c.rowSpan > 1).map((c) => [c.rowSpan - 1, c.colSpan]));
      return width;
    });
  };
  const head = table.tHead ? [...table.tHead.rows] : [...table.rows].slice(0, 1);
  const body = [...table.tBodies].flatMap((b) => [...b.rows]).filter((r) => !head.includes(r));
  const foot = table.tFoot ? [...table.tFoot.rows] : [];
  const cols = [...table.querySelectorAll(":scope > colgroup")].flatMap((g) =>
    g.children.length ? [...g.children].map((c) => c.span) : [g.span]);
  return {
    name: table.id || table.className || table.closest("[id]")?.id || "a table",
    head: widths(head)[0] || 0,
    rows: widths(body).concat(widths(foot)),
    cols: cols.reduce((n, span) => n + span, 0),
  };
})"""


def route_of(live, href):
    """The url name of a same-site link worth walking, else None."""
    parts = urlsplit(href)
    if f"{parts.scheme}://{parts.netloc}" != live:
        return None
    try:
        match = resolve(parts.path)
    except Resolver404:
        return None
    if not match.func.__module__.startswith("corral.pages") or match.url_name in NOT_PAGES:
        return None
    return match.url_name


def walk(page, live):
    """Every page reachable from the overview by links, PER_ROUTE of each
    route: {url: its tables' shapes}."""
    queue, seen, per_route, shapes = [f"{live}/"], set(), {}, {}
    while queue:
        url = queue.pop(0)
        response = page.goto(url)
        assert response.ok, f"{url}: {response.status}"
        shapes[url] = page.evaluate(SHAPES)
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            href = href.split("#")[0]
            name = route_of(live, href)
            if name is None or href in seen:
                continue
            seen.add(href)
            if per_route.get(name, 0) < PER_ROUTE:
                per_route[name] = per_route.get(name, 0) + 1
                queue.append(href)
    return shapes


def add_what_the_demo_leaves_out(settings):
    """Tokens reported by a landed session (the demo agent reports none) and a
    session stalled on a bead: the usage tables and the problems page."""
    settings.STALL_SECONDS = 60
    landed = Session.objects.filter(status=Session.Status.SUCCEEDED).order_by("created_at")[0]
    TokenUsage.put(landed.pk, "claude-code", "claude-sonnet-4-5", Counts(input=1200, output=300))
    stuck = Bead.objects.create(
        repository=landed.bead.repository, title="Stuck in thought", status="in_progress"
    )
    hour_ago = timezone.now() - timedelta(hours=1)
    Session.objects.create(
        agent=landed.agent,
        bead=stuck,
        status=Session.Status.RUNNING,
        started_at=hour_ago,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )


def test_every_tables_rows_match_its_headings_on_every_page(page, live, rq_redis, settings):
    call_command("demo", "--run", stdout=StringIO())
    add_what_the_demo_leaves_out(settings)
    admin = get_user_model().objects.create_user("table-admin", password="x" * 20)
    roles.assign(admin, roles.ADMIN)
    log_in(page, live, "table-admin", "x" * 20)

    shapes = walk(page, live)
    wrong = [
        f"{url} {table['name']}: {table['head']} headings, rows of {table['rows']}"
        + (f", {table['cols']} <col>" if table["cols"] else "")
        for url, tables in shapes.items()
        for table in tables
        if any(width != table["head"] for width in table["rows"])
        or table["cols"] not in (0, table["head"])
    ]
    assert wrong == []
    # The walk saw the pages that matter, with rows in their tables.
    routes = {resolve(urlsplit(url).path).url_name for url in shapes}
    assert {"overview", "hook", "repository", "lead", "submission", "session", "bead"} <= routes
    assert {"bead-list", "plan", "changeset", "learning", "usage", "audit", "problems"} <= routes
    filled = [table["name"] for tables in shapes.values() for table in tables if table["rows"]]
    assert len(filled) >= 25, filled
