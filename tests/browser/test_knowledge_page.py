"""An operator curates a learning on the knowledge page and sees it injected
into the next session's context, which lands on its first try."""

import pytest
from playwright.sync_api import expect

from knowledge.models import Learning
from tests.knowledge.trap import trapped_repos, work

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def test_a_curated_learning_reaches_the_next_session(
    logged_in_page, live, make_source, workspace, rq_redis
):
    billing, shipping = trapped_repos(make_source, workspace)
    bead, _ = work(billing, "Add an invoice module", "src/invoice.py")
    assert bead.status == "open"
    lesson = Learning.objects.get()

    page = logged_in_page
    page.goto(f"{live}/knowledge/")
    page.select_option("select[name=status]", "candidate")
    row = page.locator(f'tr[data-learning="{lesson.pk}"]')
    expect(row).to_be_visible()
    row.get_by_role("link").click()
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".message")).to_contain_text("Approved")
    page.fill(
        "textarea[name=body]", "Head every module with the SPDX licence line.\n" + lesson.body
    )
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".message")).to_contain_text("Saved.")

    done, session = work(shipping, "Add a module for customs duties", "src/duties.py")
    assert done.status == "closed"
    page.goto(f"{live}/sessions/{session.pk}/")
    injected = page.locator(f'#injected tr[data-learning="{lesson.pk}"]')
    expect(injected).to_contain_text("Landed on the first try")
    page.locator("#context summary").click()
    expect(page.locator("pre.context")).to_contain_text("Head every module with the SPDX")
    injected.get_by_role("link", name=f"#{lesson.pk}").click()
    expect(page.locator(f'#injections tr[data-session="{session.pk}"]')).to_contain_text("Landed")
    expect(page.locator("#outcomes")).to_contain_text("1 landed")
