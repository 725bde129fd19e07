"""The usage, audit and problems pages in Chromium: charts drawn, filters that
work, an action found on the audit page, a stalled session cancelled."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Agent, Session
from agents.models.usage import Counts, TokenUsage
from beads.models import Bead
from tests.browser.conftest import USERNAME

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_usage_page_draws_tokens_per_day(logged_in_page, live, repo):
    agent = Agent.objects.create(name="claude-1", preset="claude-code")
    bead = Bead.objects.create(
        repository=repo, title="Landed", status="closed", commit_sha="c" * 40
    )
    session = Session.objects.create(agent=agent, bead=bead, status="succeeded")
    TokenUsage.put(session.pk, "claude-code", "claude-sonnet-4-5", Counts(input=1200, output=300))
    page = logged_in_page
    page.click("header.top >> text=Usage")
    expect(page.locator("main h1")).to_contain_text("Usage")
    bars = page.locator("#chart-repositories rect.bar")
    expect(bars).to_have_count(1)
    assert bars.first.bounding_box()["height"] > 10  # drawn, not a sliver
    expect(page.locator("#chart-agents figcaption")).to_contain_text("claude-1")
    expect(page.locator("#agent-usage tr[data-agent='claude-1'] .total")).to_have_text("1,500")
    expect(page.locator("#first-try .rate")).to_have_text("100%")
    expect(page.locator(f"#bead-costs tr[data-bead='{bead.pk}']")).to_contain_text("unpriced")


def test_an_action_in_the_browser_shows_on_the_audit_page(logged_in_page, live, repo):
    page = logged_in_page
    page.goto(f"{live}{repo.get_absolute_url()}")
    page.click("form[action$='/dispatch/pause'] button")
    expect(page.locator(".dispatch-state")).to_contain_text("Dispatch is paused")
    page.click("header.top >> text=Audit")
    row = page.locator("#audit tr[data-action='pause']")
    expect(row).to_have_count(1)
    expect(row.locator(".who")).to_have_text(USERNAME)
    expect(row.locator(".target")).to_have_text(repo.slug)
    expect(row).to_contain_text("127.0.0.1")

    page.select_option("#audit-filters select[name=action]", "resume")
    page.click("#audit-filters button")
    expect(page.locator("main .empty")).to_contain_text("Nothing recorded that matches")
    page.select_option("#audit-filters select[name=action]", "pause")
    page.select_option("#audit-filters select[name=person]", USERNAME)
    page.click("#audit-filters button")
    expect(page.locator("#audit tbody tr")).to_have_count(1)


def test_the_problems_view_cancels_a_stalled_session(logged_in_page, live, repo, settings):
    settings.STALL_SECONDS = 60
    agent = Agent.objects.create(name="quiet-1")
    bead = Bead.objects.create(repository=repo, title="Stuck in thought", status="in_progress")
    hour_ago = timezone.now() - timedelta(hours=1)
    session = Session.objects.create(
        agent=agent,
        bead=bead,
        status="running",
        started_at=hour_ago,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    page = logged_in_page
    page.goto(f"{live}/")
    expect(page.locator("#problems-count")).to_contain_text("1 problem")
    page.click("#problems-count a")
    row = page.locator(f"#stalled tr[data-session='{session.pk}']")
    expect(row).to_contain_text("Stuck in thought")
    expect(page.locator("#stuck .empty")).to_be_visible()
    row.locator("button", has_text="Cancel").click()
    expect(page.locator(".message.success")).to_contain_text("Cancelled")
    session.refresh_from_db()
    assert session.status == "cancelled"
    page.goto(f"{live}/problems/")
    expect(page.locator("#stalled .empty")).to_be_visible()
