import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Agent, Session
from beads.models import Bead, Dependency
from workspace.models import Repository

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def add_repo(workspace, name, **fields):
    return Repository.objects.create(
        workspace=workspace, name=name, slug=name, bead_prefix=name, **fields
    )


def test_the_hook_shows_ready_work_and_refreshes_itself(logged_in_page, live, workspace):
    api, web = add_repo(workspace, "api"), add_repo(workspace, "web", max_agents=1)
    urgent = Bead.objects.create(repository=api, title="Fix the login crash", priority=0)
    Bead.objects.create(repository=api, title="Tidy the docs", priority=3, scope=["docs/**"])
    waiting = Bead.objects.create(repository=api, title="Use the new parser", priority=1)
    upstream = Bead.objects.create(repository=web, title="Export the parser", priority=1)
    Dependency.objects.create(issue=waiting, depends_on=upstream)
    held = Bead.objects.create(repository=web, title="Restyle the header")
    held.start("agent-1")
    Session.objects.create(
        agent=Agent.objects.create(name="agent-1"),
        bead=held,
        lease_expires_at=timezone.now() + timedelta(seconds=150),
    )

    page = logged_in_page
    page.click("header.top nav >> text=Hook")
    page.wait_for_url(f"{live}/hook/")
    api_part = page.locator('section[data-repo="api"]')
    web_part = page.locator('section[data-repo="web"]')
    expect(api_part.locator("tr.bead td.title")).to_have_text(
        ["Fix the login crash", "Tidy the docs"]
    )
    expect(api_part.locator(f'tr[data-bead="{urgent.id}"] a')).to_have_attribute(
        "href", f"/beads/{urgent.id}/"
    )
    expect(web_part.locator(".at-max")).to_contain_text("At max_agents (1 in progress)")
    claim = web_part.locator("tr.claim")
    expect(claim.locator("td.agent")).to_have_text("agent-1")
    expect(claim.locator(".lease")).to_have_text(re.compile(r"^2:[0-2]\d$"))

    # New work arrives while the page is open: the poll brings it in, no reload.
    page.evaluate("window.notReloaded = true")
    fresh = Bead.objects.create(repository=api, title="Freshly stocked", priority=1)
    row = api_part.locator(f'tr[data-bead="{fresh.id}"]')
    expect(row).to_be_visible(timeout=6_000)
    expect(api_part.locator("tr.bead td.title")).to_have_text(
        ["Fix the login crash", "Freshly stocked", "Tidy the docs"]
    )
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path="/tmp/corral-hook.png", full_page=True)
