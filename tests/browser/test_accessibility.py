"""Every page passes an accessibility audit and fits a phone: with the demo
run to its end, axe-core (axe-playwright-python, its JS shipped in the wheel)
finds no serious or critical violation on any page, in light and dark mode
(the system's colour scheme), at desktop width and at 390 px; and at 390 px no
page scrolls sideways (a wide table or a diff scrolls inside its own box)."""

from io import StringIO
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import resolve

from tests.browser.conftest import TIMEOUT_MS, log_in
from tests.browser.test_tables import add_what_the_demo_leaves_out, walk
from workspace import roles

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = 390
MODES = [(scheme, width) for scheme in ("light", "dark") for width in (1280, PHONE)]
PAGES = {
    *("overview", "hook", "bead-list", "bead", "bead-new", "plans", "plan", "session"),
    *("submission", "lead", "changesets", "changeset", "learnings", "learning", "problems"),
    *("usage", "audit", "account", "repository", "review", "review-figures"),
}
SERIOUS = {"serious", "critical"}
# The page's own width, and what sticks out past a phone's screen (to say why).
OVERFLOW = """(width) => ({
  page: document.documentElement.scrollWidth,
  wide: [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > width + 1)
    .filter((el) => !el.parentElement.closest("pre, .scroll, .waves, figure.chart"))
    .slice(0, 3)
    .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
      + (el.className && typeof el.className === "string" ? "." + el.className : "")),
})"""


def one_url_per_page(page, live):
    """The first URL the walk from the overview found of each page."""
    urls = {}
    for url in walk(page, live):
        urls.setdefault(resolve(urlsplit(url).path).url_name, url)
    return urls


def serious_violations(page, axe):
    """Each serious or critical axe violation on the page: (rule, nodes, first target)."""
    results = axe.run(page).response
    return [
        (v["id"], len(v["nodes"]), v["nodes"][0]["target"])
        for v in results["violations"]
        if v["impact"] in SERIOUS
    ]


def audit(browser, live, urls, scheme, width):
    """Visit every page in one colour scheme and width: ({page: its problems},
    the pages' background colour)."""
    context = browser.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    log_in(page, live, "a11y-admin", "x" * 20)
    axe, problems = Axe(), {}
    try:
        for name, url in sorted(urls.items()):
            # Eighty visits with axe on each, while the other test process may run
            # a scenario on the same two cores: one slow page is not a failure.
            assert page.goto(url, timeout=3 * TIMEOUT_MS).ok, url
            found = serious_violations(page, axe)
            if width == PHONE:
                fit = page.evaluate(OVERFLOW, PHONE)
                if fit["page"] > PHONE:
                    found.append(("page wider than the phone", fit["page"], fit["wide"]))
            if found:
                problems[f"{scheme} {width}px {name} {urlsplit(url).path}"] = found
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    finally:
        context.close()
    return problems, background


def test_every_page_is_accessible_and_fits_a_phone_in_light_and_dark(
    browser, page, live, rq_redis, settings
):
    call_command("demo", "--run", stdout=StringIO())
    add_what_the_demo_leaves_out(settings)
    admin = get_user_model().objects.create_user("a11y-admin", password="x" * 20)
    roles.assign(admin, roles.ADMIN)
    log_in(page, live, "a11y-admin", "x" * 20)
    urls = one_url_per_page(page, live)
    assert PAGES <= set(urls), f"the walk missed {PAGES - set(urls)}"

    # The system's colour scheme reaches the page: its background differs.
    backgrounds, problems = {}, {}
    for scheme, width in MODES:
        found, background = audit(browser, live, urls, scheme, width)
        problems.update(found)
        backgrounds[scheme] = background
    assert backgrounds["light"] != backgrounds["dark"], backgrounds
    assert problems == {}
