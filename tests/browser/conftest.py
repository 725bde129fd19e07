"""Headless Chromium against a live Django server.

One browser per session, one context per test. Playwright's sync API runs an
event loop in the main thread, so Django would refuse ORM calls from the tests
with SynchronousOnlyOperation; the tests make none concurrently with it.
"""

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from workspace import roles

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
USERNAME = "browser-user"
PASSWORD = "correct horse battery staple"


# Module scope: while Playwright's sync API is open, an event loop counts as
# running in the main thread, which changes how Django keeps connections.
# Closing it after each module keeps that out of the tests that follow.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: the browser tests need Debian's chromium "
            "package (apt-get install chromium); Playwright's own download is not used.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def live(live_server, transactional_db):
    """The live server's base URL, without a trailing slash."""
    return live_server.url.rstrip("/")


@pytest.fixture
def browser_user(transactional_db):
    """An operator: the browser tests review, cancel and revert."""
    user = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    roles.assign(user, roles.OPERATOR)
    return user


def log_in(page, live, username, password):
    page.goto(f"{live}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def logged_in_page(page, live, browser_user):
    """A page whose session logged in through the real login form."""
    log_in(page, live, USERNAME, PASSWORD)
    assert page.url == f"{live}/", f"login did not land on the overview: {page.url}"
    return page
