"""The full planning cycle in Chromium, on the demo workspace: file a bead with
a scope and a dependency, build a plan from an epic, move a bead to another
wave, activate, and watch the demo agents land the waves in order until the
plan is done."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from beads.models import Bead, Plan
from corral import demo_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EPIC = "Tags on items"
NOTES = """Write down how tags work.

```corral write docs/tags.md
# Tags

Items carry tags; GET /items?tag=x filters by one.
```
"""


@pytest.fixture
def demo(settings, tmp_path, transactional_db):
    settings.CORRAL_HOME = tmp_path / "home"
    call_command("demo", stdout=StringIO())
    epic = Bead.objects.get(title=EPIC)
    children = set(epic.children().values_list("pk", flat=True))
    # Only the plan's beads are left for the demo agents: the run stays short.
    Bead.objects.filter(status="open").exclude(pk__in=children).exclude(pk=epic.pk).update(
        status="deferred"
    )
    return epic


def watch(page, seen):
    """Called with each line the demo run says: after a bead lands, give the
    board a poll (every 2 s) and note the wave it calls current."""

    def say(line):
        if "landed" in line:
            page.wait_for_timeout(2500)
            current = page.locator("#current-wave")
            wave = current.inner_text() if current.count() else "done"
            if not seen or seen[-1] != wave:
                seen.append(wave)

    return say


def test_plan_activate_and_watch_the_waves_land(logged_in_page, live, demo, rq_redis):
    page = logged_in_page
    store = Bead.objects.get(title="Store tags on items")

    # File a bead with a scope (a file not there yet: confirmed) and a dependency.
    page.goto(f"{live}/beads/new?repo=demo-api")
    page.fill("#id_title", "Document tags")
    page.fill("#id_description", NOTES)
    page.fill("#id_scope_text", "docs/tags.md")
    expect(page.locator('#scope-report [data-pattern="docs/tags.md"]')).to_contain_text(
        "matches no file"
    )
    page.fill("#id_waits_for", store.id)
    page.click("#bead-form button[type=submit]")
    expect(page.locator("#confirm-unmatched")).to_be_visible()
    expect(page.locator("#id_title")).to_have_value("Document tags")
    page.click("#bead-form button[type=submit]")
    page.wait_for_url(re.compile(r"/beads/api-\w+/$"))
    notes = Bead.objects.get(title="Document tags")
    expect(page.locator("#dependencies")).to_contain_text(store.id)
    expect(page.locator("#readiness")).to_contain_text(f"waits for {store.id}")

    # A plan from the epic's children, and the new bead picked by hand.
    page.goto(f"{live}/plans/")
    page.fill("#id_name", "Tags")
    page.fill("#id_epic", demo.id)
    page.fill("#id_beads", notes.id)
    page.click("#start-plan button[type=submit]")
    page.wait_for_url(re.compile(r"/plans/\d+/$"))
    plan = Plan.objects.get(name="Tags")
    expect(page.locator(f'.wave[data-wave="1"] [data-bead="{store.id}"]')).to_be_visible()
    expect(page.locator(f'.wave[data-wave="2"] [data-bead="{notes.id}"]')).to_be_visible()
    expect(page.locator("svg.arrows path.arrow")).to_have_count(3)

    # Move the new bead to a wave of its own, at the end (htmx swaps the board).
    card = page.locator(f'[data-bead="{notes.id}"]')
    card.locator("input[name=wave]").fill("3")
    card.locator("button").click()
    expect(page.locator(f'.wave[data-wave="3"] [data-bead="{notes.id}"]')).to_be_visible()
    assert page.url.endswith(f"/plans/{plan.pk}/")  # no reload: the board was swapped
    page.screenshot(path="/tmp/corral-plan-draft.png", full_page=True)

    page.click("#activate")
    expect(page.locator(".message.success")).to_contain_text("is active")
    expect(page.locator("#current-wave")).to_have_text("1")

    # The demo agents, as `manage.py demo --run` runs them, here: the page polls
    # by itself meanwhile (Chromium and the live server run on their own).
    seen = ["1"]
    outcome = demo_run.Run(say=watch(page, seen)).execute()
    board = page.locator("#plan-board")
    expect(board).to_have_attribute("data-status", "done", timeout=10_000)
    page.screenshot(path="/tmp/corral-plan-done.png", full_page=True)
    expect(page.locator("#plan-landed")).to_be_visible()
    expect(page.locator("#plan-board h1 [data-status]")).to_have_text("Done")
    assert seen == ["1", "2", "3", "done"]  # the waves landed in order
    assert outcome.ok, outcome.stuck
    closed = Bead.objects.filter(pk__in=[store.id, notes.id], status="closed")
    assert closed.count() == 2
    first, last = Bead.objects.get(pk=store.id), Bead.objects.get(pk=notes.id)
    assert first.closed_at < last.closed_at
