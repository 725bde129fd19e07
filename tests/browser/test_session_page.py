"""A session's page follows its agent live: the log grows, then the final diff appears."""

import sys

import pytest
from playwright.sync_api import expect

from agents.models import Agent, LogChunk, Session
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import program_agent, run_in_thread, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE_MS = 20_000
LOG_LINES = "document.querySelector('#session-log').textContent.split('\\n').filter(Boolean).length"
# Records when each log line first shows in the page (ms since the epoch).
WATCH_LINES = """(() => {
window.seen = {};
const log = document.querySelector('#session-log');
const note = (now) => {
  for (const line of log.textContent.split('\\n')) {
    const m = line.match(/^at (\\d+\\.\\d+) line (\\d+)/);
    if (m && !(m[2] in window.seen)) window.seen[m[2]] = now && [Number(m[1]) * 1000, now];
  }
};
note(null);  // lines that came with the page: not timed
const watch = {childList: true, characterData: true, subtree: true};
new MutationObserver(() => note(Date.now())).observe(log, watch);
})()"""
# An agent that stamps each line with the time it printed it, then writes a file.
STAMPER = (
    "import pathlib, sys, time\n"
    "for n in range(int(sys.argv[1])):\n"
    "    print(f'at {time.time():.3f} line {n}', flush=True)\n"
    "    time.sleep(float(sys.argv[2]))\n"
    "pathlib.Path('src').mkdir(exist_ok=True)\n"
    "pathlib.Path('src/stamps.txt').write_text('done\\n')\n"
)


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def start_in_thread(repo, agent, title):
    bead = Bead.objects.create(repository=repo, title=title, scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    return session, run_in_thread(session.pk)


def test_the_log_grows_and_the_diff_appears_without_a_reload(logged_in_page, live, repo, rq_redis):
    session, runner = start_in_thread(repo, program_agent("chatty", "30", "0.2"), "Talk a lot")
    try:
        wait_for(lambda: LogChunk.objects.filter(session=session).exists())
        page = logged_in_page
        page.goto(f"{live}/sessions/{session.pk}/")
        page.evaluate("window.notReloaded = true")
        expect(page.locator("#session-status .state")).to_have_text("Running")
        expect(page.locator("#log-poller")).to_have_attribute("hx-trigger", "every 1s")
        first = page.evaluate(LOG_LINES)
        assert first < 30
        # A function, not an expression string: the CSP forbids Playwright's eval of a string.
        page.wait_for_function(f"() => {LOG_LINES} >= {first + 3}", timeout=LIVE_MS)
        expect(page.locator("#time-left")).to_contain_text("left")
        page.screenshot(path="/tmp/corral-session-running.png", full_page=True)

        diff = page.locator("#diff pre.diff")
        expect(diff).to_contain_text("+++ b/src/chatty.txt", timeout=LIVE_MS)
        expect(diff.locator(".add").last).to_have_text("+30 lines")
        expect(page.locator("#session-status .state")).to_have_text("Submitted")
        expect(page.locator("#session-log")).to_contain_text("line 29")
        assert page.evaluate(LOG_LINES) == 30
        expect(page.locator(".changed-files")).to_have_text("src/chatty.txt")
        expect(page.locator("#submission-link")).to_be_visible()
        # Ended: both pollers came back without their trigger.
        expect(page.locator("#log-poller")).not_to_have_attribute("hx-trigger", "every 1s")
        assert (
            page.evaluate("document.querySelector('#session-status').hasAttribute('hx-get')")
            is False
        )
        expect(page.locator("button.cancel")).to_have_count(0)
        assert page.evaluate("window.notReloaded") is True
        # The log followed its end.
        at_end = "(l => l.scrollHeight - l.scrollTop - l.clientHeight < 24)(" + (
            "document.querySelector('#session-log'))"
        )
        assert page.evaluate(at_end)
        page.screenshot(path="/tmp/corral-session-done.png", full_page=True)
    finally:
        runner.join(timeout=60)
    assert Session.objects.get(pk=session.pk).status == "submitted"


def test_a_line_shows_within_about_a_second_of_being_printed(logged_in_page, live, repo, rq_redis):
    command = [sys.executable, "-c", STAMPER, "20", "0.25"]
    agent = Agent.objects.create(name="stamper", command=command)
    session, runner = start_in_thread(repo, agent, "Stamp lines")
    try:
        page = logged_in_page
        page.goto(f"{live}/sessions/{session.pk}/")
        page.evaluate(WATCH_LINES)
        expect(page.locator("#diff pre.diff")).to_contain_text("src/stamps.txt", timeout=LIVE_MS)
        seen = page.evaluate("window.seen")
    finally:
        runner.join(timeout=60)
    # Only the lines that arrived while the page watched (the first came with the page).
    watched = sorted(shown - printed for printed, shown in filter(None, seen.values()))
    assert len(watched) >= 10, seen
    median, worst = watched[len(watched) // 2], watched[-1]
    print(f"log latency over {len(watched)} lines: median {median:.0f} ms, worst {worst:.0f} ms")
    assert median < 1500 and worst < 3000


def test_pause_dispatch_and_cancel_a_running_session_from_the_pages(
    logged_in_page, live, repo, agent, rq_redis
):
    bead = Bead.objects.create(repository=repo, title="Hold still", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.start(worker="elsewhere:1")  # no process: the page is what is under test
    page = logged_in_page
    page.click("button.run")
    expect(page.locator(".message.error")).to_contain_text("No session worker is running")
    page.screenshot(path="/tmp/corral-overview-run.png")

    page.goto(f"{live}/repos/{repo.slug}/")
    page.click("button.pause")
    expect(page.locator(".message.success")).to_contain_text("Dispatch paused")
    expect(page.locator("#dispatch")).to_contain_text("Dispatch is paused")
    row = page.locator(f'tr.session[data-session="{session.pk}"]')
    expect(row.locator(".state")).to_have_text("Running")
    expect(row.locator(".time-left")).to_contain_text("left")
    page.screenshot(path="/tmp/corral-repo-sessions.png", full_page=True)

    row.locator("a.session-link").click()
    expect(page.locator("#session-status .state")).to_have_text("Running")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button.cancel")
    expect(page.locator(".message.success")).to_contain_text(f"{bead.id} is back on the hook")
    expect(page.locator("#session-status .state")).to_have_text("Cancelled")
    expect(page.locator(".session-error")).to_have_text("Cancelled by browser-user.")
    page.screenshot(path="/tmp/corral-session-cancelled.png", full_page=True)
    page.goto(f"{live}/repos/{repo.slug}/")
    expect(page.locator("#running-sessions")).to_contain_text("No session is running here.")
    page.click("button.resume")
    expect(page.locator("#dispatch")).not_to_contain_text("Dispatch is paused")
