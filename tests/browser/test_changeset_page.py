"""A change set walked in the browser from the form to landing, its page live."""

import pytest
from playwright.sync_api import expect

from agents.models import ChangeSet
from tests.agents.test_changesets import AGREE, bead, hand_in, work

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE_MS = 10_000  # the status part polls every 2 s


def test_a_change_set_from_creation_to_landing(logged_in_page, live, make_repo, agent, rq_redis):
    api, web = make_repo("api"), make_repo("web")
    a, w = bead(api, "Serve v2"), bead(web, "Expect v2")
    page = logged_in_page
    page.goto(f"{live}/changesets/")
    page.fill("input[name=title]", "API v2")
    page.fill("input[name=beads]", f"{a.id} {w.id}")
    page.fill("input[name=integration_command]", " ".join(AGREE[:2]) + f" '{AGREE[2]}'")
    page.click("#new-changeset button[type=submit]")
    changeset = ChangeSet.objects.get()
    assert changeset.integration_command == AGREE
    status = page.locator("#changeset-status")
    expect(status.locator("[data-status]").first).to_have_text("Open")
    expect(page.locator(f'tr[data-member="{a.id}"]')).to_contain_text("not held yet")
    page.evaluate("window.notReloaded = true")

    hand_in(a, agent, {"version": "2\n"})
    work(api)
    expect(page.locator(f'tr[data-member="{a.id}"] [data-held]')).to_have_text(
        "held", timeout=LIVE_MS
    )
    hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    changeset.refresh_from_db()
    assert changeset.status == "landed"
    expect(status.locator("[data-status]").first).to_have_text("Landed", timeout=LIVE_MS)
    expect(page.locator("#integration-outcome")).to_have_attribute("data-passed", "yes")
    expect(page.locator('tr[data-state="advanced"]')).to_have_count(2)
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path="/tmp/corral-changeset.png", full_page=True)
