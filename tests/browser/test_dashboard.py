import re
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from beads.models import Bead, Dependency
from tests.browser.conftest import PASSWORD, USERNAME, log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

S = Bead.Status


def test_overview_needs_login(page, live):
    page.goto(f"{live}/")
    assert urlparse(page.url).path == "/login/"
    assert "next=/" in page.url
    expect(page.locator("h1")).to_have_text("Log in to Corral")


def test_wrong_password_shows_an_error(page, live, browser_user):
    log_in(page, live, USERNAME, "not the password")
    assert urlparse(page.url).path == "/login/"
    expect(page.locator(".login .error")).to_contain_text("enter a correct username and password")


def test_right_password_lands_on_overview(page, live, browser_user, workspace):
    page.goto(f"{live}/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live}/")
    expect(page.locator("main h1")).to_have_text(workspace.name)
    expect(page.locator("header.top")).to_contain_text(f"Log out {USERNAME}")


def beads(repo, **per_status):
    """Create beads in `repo`: `open=2` makes two open beads."""
    made = []
    for status, n in per_status.items():
        for i in range(n):
            made.append(Bead.objects.create(repository=repo, title=f"{status} {i}", status=status))
    return made


def test_overview_counts_beads_per_status(logged_in_page, live, make_repo):
    alpha, beta = make_repo("alpha"), make_repo("beta")
    beads(alpha, open=3, in_progress=1, review=2, closed=4)
    beads(beta, blocked=2, deferred=1, open=1)
    expected = {
        alpha.slug: {
            "proposed": 0,
            "open": 3,
            "in_progress": 1,
            "review": 2,
            "blocked": 0,
            "deferred": 0,
            "closed": 4,
            "total": 10,
        },
        beta.slug: {
            "proposed": 0,
            "open": 1,
            "in_progress": 0,
            "review": 0,
            "blocked": 2,
            "deferred": 1,
            "closed": 0,
            "total": 4,
        },
    }
    page = logged_in_page
    page.goto(f"{live}/")
    page.screenshot(path="/tmp/corral-overview.png", full_page=True)

    rows = page.locator("#repositories tbody tr[data-repo]")
    expect(rows).to_have_count(2)
    for slug, counts in expected.items():
        row = page.locator(f'tr[data-repo="{slug}"]')
        shown = {
            cell.get_attribute("data-status"): int(cell.inner_text())
            for cell in row.locator("td[data-status]").all()
        }
        assert shown == counts, slug


def test_repository_page_groups_beads(logged_in_page, live, make_repo):
    app, lib = make_repo("app"), make_repo("lib")
    urgent = Bead.objects.create(
        repository=app,
        title="Fix the login crash",
        status=S.OPEN,
        priority=0,
        scope=["src/auth/**", "tests/test_auth.py"],
    )
    working = Bead.objects.create(
        repository=app, title="Add a cache", status=S.IN_PROGRESS, priority=1
    )
    Bead.objects.create(repository=app, title="Old chore", status=S.CLOSED, priority=3)
    upstream = Bead.objects.create(repository=lib, title="Export the parser", status=S.OPEN)
    Dependency.objects.create(issue=urgent, depends_on=upstream, type=Dependency.Type.BLOCKS)
    Dependency.objects.create(issue=urgent, depends_on=working, type=Dependency.Type.RELATED)

    page = logged_in_page
    page.goto(f"{live}/")
    page.click(f'tr[data-repo="{app.slug}"] a')
    page.wait_for_url(f"{live}/repos/{app.slug}/")
    page.screenshot(path="/tmp/corral-repo.png", full_page=True)

    expect(page.locator("main h1")).to_contain_text("app")
    expect(page.locator("main h1")).to_contain_text("3 beads")
    groups = page.locator("section.status-group")
    assert [g.get_attribute("data-status") for g in groups.all()] == [
        "open",
        "in_progress",
        "closed",
    ]
    expect(page.locator('section[data-status="in_progress"] h2')).to_have_text(
        re.compile(r"In progress\s+1")
    )

    row = page.locator(f'section[data-status="open"] tr[id="{urgent.id}"]')
    expect(row.locator("td.priority")).to_have_text("P0")
    expect(row.locator("td.scope code")).to_have_text(["src/auth/**", "tests/test_auth.py"])
    deps = row.locator("td.deps .dep")
    expect(deps).to_have_count(2)
    blocker = deps.filter(has_text=upstream.id)
    expect(blocker).to_have_attribute("title", re.compile("blocks: Export the parser"))
    expect(blocker.locator("em")).to_have_count(0)
    expect(deps.filter(has_text=working.id).locator("em")).to_have_text("related")
    assert upstream.id.startswith(lib.bead_prefix)

    other = page.locator(f'tr[id="{working.id}"]')
    expect(other.locator("td.scope")).to_have_text("any")
    expect(other.locator("td.deps")).to_have_text("—")
    expect(page.locator(f'tr[id="{upstream.id}"]')).to_have_count(0)


def test_htmx_is_served_from_static(logged_in_page, live):
    page = logged_in_page
    assert page.evaluate("typeof window.htmx") == "object"
    srcs = page.locator("script[src]").evaluate_all("els => els.map(e => e.src)")
    htmx = [s for s in srcs if "htmx" in s]
    assert htmx, srcs
    for src in srcs:
        url = urlparse(src)
        assert url.netloc == urlparse(live).netloc, f"script from another host: {src}"
        assert url.path.startswith("/static/"), src
    response = page.request.get(htmx[0])
    assert response.ok
