"""The first hour: `manage.py up` on an empty database, as `make run` starts it,
and a newcomer who does only what the pages suggest sees every demo bead land.

Real processes throughout: up's embedded Redis, gunicorn, the RQ workers, the
leads and the demo agents. The person logs in with the password up printed,
then follows the overview's next decisions (approve the lesson a refusal
taught, review the submissions waiting) until nothing is left to land.
"""

import json
import os
import re
import signal
import time
from collections import Counter

import pytest

from corral.demo import DEMO_DIR, demo_slugs
from tests.browser.conftest import log_in
from tests.corral.test_up import UP_LINE, Up, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO_TIMEOUT_S = 420  # two slow cores: seconds of work each, a minute or two in all
UNFINISHED = ["proposed", "open", "in_progress", "review"]
# The decisions only a person can take for the demo to go on. This newcomer
# takes a lesson up once the bead that taught it has run out of attempts, as
# one who looks in later would find it.
FOLLOWED = (
    "#decisions .decision.review a, "
    "#decisions .decision.lesson:has-text('is blocked after 3 failed attempts') a"
)


def demo_records():
    with open(DEMO_DIR / "beads.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def to_land_per_repository():
    """{slug: beads closed at the end}: those seeded closed, and every open one."""
    prefixes = {slug.removeprefix("demo-"): slug for slug in demo_slugs()}
    landing = [r for r in demo_records() if r["status"] in ("open", "closed")]
    return Counter(prefixes[r["id"].split("-")[0]] for r in landing)


@pytest.fixture
def up(tmp_path):
    """`manage.py up` in a fresh CORRAL_HOME: it makes the admin and its password."""
    running = Up(tmp_path / "home", "--port", str(free_port()), admin=None)
    yield running
    running.cleanup()


def counts(page, slug):
    row = page.locator(f"#repositories tr[data-repo='{slug}']")
    cells = row.locator("td[data-status]")
    return {
        cells.nth(n).get_attribute("data-status"): int(cells.nth(n).inner_text())
        for n in range(cells.count())
    }


def all_landed(page, expected):
    for slug, closed in expected.items():
        seen = counts(page, slug)
        if seen["closed"] != closed or any(seen[status] for status in UNFINISHED):
            return False
    return True


def approve_here(page):
    """Approve what this page offers, and each next review it leads on to."""
    while True:
        page.get_by_role("button", name="Approve", exact=True).click()
        page.wait_for_load_state()
        next_review = page.locator("#next-review a")
        if not next_review.count():
            return
        next_review.click()
        page.wait_for_load_state()


def test_a_newcomer_following_the_overview_sees_every_demo_bead_land(up, page):
    url = up.wait_for(r"Corral is running at (http://\S+)")[1].rstrip("/")
    password = up.wait_for(UP_LINE + r"created superuser admin with password (\S+)")[1]
    log_in(page, url, "admin", password)
    assert page.url == f"{url}/", page.url
    expected = to_land_per_repository()
    followed = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while not all_landed(page, expected):
        assert time.monotonic() < deadline, (
            f"followed {followed}; left: "
            + str({slug: counts(page, slug) for slug in expected})
            + f"\n{up.output}"
        )
        decision = page.locator(FOLLOWED).first
        if decision.count():
            followed.append(decision.inner_text())
            decision.click()
            page.wait_for_load_state()
            approve_here(page)
        else:
            page.wait_for_timeout(1000)
        page.goto(f"{url}/")

    lessons = [text for text in followed if text.startswith("Approve the lesson")]
    assert len(lessons) == 1, followed
    assert lessons[0].startswith("Approve the lesson learned from api-q7jb's refusal: check gate:")
    assert '"# owner: items-team"' in lessons[0]
    reviews = [text for text in followed if text.startswith("Review")]
    assert reviews and all(
        re.fullmatch(r"Review (\d+ demo-infra submissions|infra-\w+: .+)", text) for text in reviews
    ), followed
    assert set(followed) == set(lessons + reviews)
    page.goto(f"{url}/beads/api-q7jb/")
    assert page.locator("h1 [data-status]").get_attribute("data-status") == "closed"
    assert page.locator("#attempts").inner_text() == "3"  # landed on the try after approval
    assert page.locator("#filed").inner_text().endswith("by the demo")

    os.kill(up.proc.pid, signal.SIGINT)
    assert up.wait() == 0, up.output
    beads = [r for r in demo_records() if r["status"] == "open" and r["issue_type"] != "epic"]
    summary = re.search(UP_LINE + r"this run: (\d+) beads landed,", up.output, re.M)
    assert summary and int(summary[1]) == len(beads), up.output
