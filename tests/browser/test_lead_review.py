"""A person reviews a submission in the browser; the page follows the lead live."""

import pytest
from playwright.sync_api import expect

from beads.models import Bead
from tests.factories import land, run_lead

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE_MS = 10_000  # the status part polls every 2 s


def awaiting_review(repo, agent):
    """A submission the lead has gated and left waiting for a person."""
    repo.review_mode = "human"
    repo.check_command = "python3 -c \"print('5 passed')\""
    repo.save()
    files = {"src/app.py": "print('hello, world')\n", "docs/note.html": "<b>bold</b>\n"}
    bead, sub = land(repo, agent, files, title="Greet the world")
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"
    return bead, sub


def count_swaps(page):
    page.evaluate(
        "window.swaps = 0; document.body.addEventListener('htmx:afterSwap', () => window.swaps++)"
    )


def test_approve_then_the_commit_appears_without_a_reload(
    logged_in_page, live, repo, agent, rq_redis
):
    bead, sub = awaiting_review(repo, agent)
    page = logged_in_page
    page.goto(f"{live}/submissions/{sub.pk}/")
    status = page.locator("#submission-status")
    expect(status.locator("[data-status]")).to_have_text("Awaiting review")
    diff = page.locator("table.diff")
    expect(diff.locator("tr.add td.code").first).to_be_visible()
    expect(diff.locator("tr.del td.code")).to_contain_text(["print('hello')"])
    expect(diff.locator("tr.add td.code").filter(has_text="<b>bold</b>")).to_have_count(1)
    expect(page.locator('tr[data-gate="check"] pre')).to_contain_text("5 passed")
    page.screenshot(path="/tmp/corral-submission.png", full_page=True)

    page.click("button.approve")
    expect(page.locator(".message.success")).to_have_text("Approved: the lead will commit it.")
    expect(status.locator("[data-status]")).to_have_text("Approved")
    expect(status).to_have_attribute("hx-trigger", "every 2s")
    page.evaluate("window.notReloaded = true")
    count_swaps(page)

    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "committed"
    expect(page.locator("#commit-sha")).to_have_text(sub.commit_sha, timeout=LIVE_MS)
    expect(status.locator("[data-status]")).to_have_text("Committed")
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("window.swaps") >= 1
    # Finished: the partial came back without its trigger, so polling stopped.
    expect(page.locator("#submission-status")).not_to_have_attribute("hx-trigger", "every 2s")
    expect(page.locator("button.approve")).to_have_count(0)

    page.goto(f"{live}/repos/{repo.slug}/lead/")
    finished = page.locator(f'#finished tr[data-submission="{sub.pk}"]')
    expect(finished).to_contain_text(sub.commit_sha[:12])
    newest = page.locator(f'#commits tr[data-sha="{sub.commit_sha}"]')
    expect(newest.locator("a.bead-link")).to_have_attribute("href", f"/beads/{bead.id}/")
    newest.locator("a.bead-link").click()
    page.wait_for_url(f"{live}/beads/{bead.id}/")
    expect(page.locator("form.revert button")).to_have_text("Revert")
    page.screenshot(path="/tmp/corral-bead-revert.png", full_page=True)


def test_a_reason_typed_while_the_page_polls_survives_until_reject(
    logged_in_page, live, repo, agent, rq_redis
):
    bead, sub = awaiting_review(repo, agent)
    page = logged_in_page
    page.goto(f"{live}/submissions/{sub.pk}/")
    count_swaps(page)
    page.fill("input[name=reason]", "Greet only Europe")
    # A function, not an expression string: the CSP forbids Playwright's eval of a string.
    page.wait_for_function("() => window.swaps >= 2", timeout=LIVE_MS)  # two polls went by
    expect(page.locator("input[name=reason]")).to_have_value("Greet only Europe")

    page.click("button.reject")
    expect(page.locator(".message.success")).to_contain_text(f"Rejected: {bead.id}")
    expect(page.locator("#submission-status [data-status]")).to_have_text("Rejected")
    expect(page.locator("#submission-status .reason")).to_have_text("Greet only Europe")
    bead.refresh_from_db()
    assert bead.status == Bead.Status.OPEN and bead.last_failure == "Greet only Europe"


def test_the_lead_page_polls_while_a_submission_is_in_flight(
    logged_in_page, live, repo, agent, rq_redis
):
    bead, sub = awaiting_review(repo, agent)
    page = logged_in_page
    page.goto(f"{live}/repos/{repo.slug}/")
    page.click(f'a[href="/repos/{repo.slug}/lead/"]')
    row = page.locator(f'#in-flight tr[data-submission="{sub.pk}"]')
    expect(row.locator(".position")).to_have_text("1")
    expect(row.locator('.gate[data-gate="review"] b')).to_have_text("waiting")
    page.screenshot(path="/tmp/corral-lead.png", full_page=True)

    page.click(f'a[href="/submissions/{sub.pk}/"]')
    page.click("button.approve")
    expect(page.locator(".message.success")).to_be_visible()
    page.goto(f"{live}/repos/{repo.slug}/lead/")
    expect(row.locator(".state")).to_have_text("Approved")
    expect(page.locator("#lead-queue")).to_have_attribute("hx-trigger", "every 2s")
    run_lead(repo)
    expect(page.locator("#in-flight")).to_contain_text("Nothing in flight", timeout=LIVE_MS)
    expect(page.locator(f'#finished tr[data-submission="{sub.pk}"]')).to_contain_text("Committed")
    expect(page.locator("#lead-queue")).not_to_have_attribute("hx-trigger", "every 2s")
    page.screenshot(path="/tmp/corral-lead-done.png", full_page=True)
