"""A reviewer clears the review queue from the keyboard alone: j/k, a, x, ?."""

import pytest
from playwright.sync_api import expect

from agents.models import Session, Submission
from beads.models import Bead

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def waiting(repo, agent, n):
    """`n` submissions awaiting review, as the lead leaves them (rows only)."""
    subs = []
    for i in range(n):
        bead = Bead.objects.create(repository=repo, title=f"Change {i}", status="review")
        session = Session.objects.create(agent=agent, bead=bead, status="submitted")
        subs.append(
            Submission.objects.create(
                session=session,
                repository=repo,
                bead=bead,
                status="awaiting_review",
                lines=3,
                risk="low",
                people_needed=1,
                review_why=["the repository reviews by hand"],
            )
        )
    return subs


def test_a_reviewer_clears_ten_submissions_from_the_keyboard(
    logged_in_page, live, repo, agent, rq_redis
):
    subs = waiting(repo, agent, 10)
    page = logged_in_page
    page.goto(f"{live}/")
    expect(page.locator("#nav-review .badge")).to_have_text("10")
    page.goto(f"{live}/review/")
    rows = page.locator("#review-queue tr[data-submission]")
    expect(rows).to_have_count(10)
    page.evaluate("window.notReloaded = true")

    page.keyboard.press("?")
    expect(page.locator("#review-keys")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#review-keys")).to_be_hidden()

    expect(rows.nth(0)).to_have_class("review-row selected")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(rows.nth(1)).to_have_class("review-row selected")

    page.keyboard.press("x")  # the second one is rejected, with a reason
    reason = rows.nth(1).locator("input.reason")
    expect(reason).to_be_focused()
    page.keyboard.type("Too broad")
    page.keyboard.press("Enter")
    expect(rows).to_have_count(9)
    expect(page.locator("#review-status")).to_have_text(
        f"Rejected: {subs[1].bead_id} is back on the hook."
    )

    page.keyboard.press("k")
    for left in range(8, -1, -1):  # the other nine approved, one key each
        expect(page.locator("#review-queue tr.selected")).to_have_count(1)
        page.keyboard.press("a")
        expect(rows).to_have_count(left)
    expect(page.locator("#review-empty")).to_be_visible()
    expect(page.locator("#review-status")).to_have_text("Approved: the lead will commit it.")
    expect(page.locator("#nav-review .badge")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True

    statuses = dict(Submission.objects.values_list("pk", "status"))
    assert statuses.pop(subs[1].pk) == "rejected"
    assert set(statuses.values()) == {"approved"}
    assert Submission.objects.get(pk=subs[1].pk).reason == "Too broad"
