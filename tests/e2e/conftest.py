"""Real-browser fixtures: Playwright driving Debian's Chromium against `live_server`.

Every browser test is marked `@pytest.mark.browser` and uses:
- `browser`: one headless Chromium for the session (never `playwright install`:
  the system's /usr/bin/chromium, or CHROMIUM_PATH);
- `page`: a fresh browser context logged in as an operator through the real
  login form; `login_page(role, username)` for more users (a second browser);
- `screenshot(page, name)`: a full-page PNG into $SCREENSHOT_DIR when it is set.

Without Chromium the tests are skipped with a message, unless REQUIRE_BROWSER
is set, in which case a missing browser is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ALL_MICROGRIDS, grant_microgrids

# Playwright's sync API runs an asyncio loop in this thread; the ORM calls the
# tests make around it (fixtures, assertions) are still synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "e2e-Secret-pw-123"
VIEWPORT = {"width": 1440, "height": 900}
TIMEOUT_MS = 15_000


def _browser_required() -> bool:
    return os.environ.get("REQUIRE_BROWSER", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = f"no Chromium at {CHROMIUM} (install Debian's chromium or set CHROMIUM_PATH)"
        if _browser_required():
            pytest.fail(f"REQUIRE_BROWSER is set but there is {message}", pytrace=False)
        pytest.skip(f"browser test skipped: {message}; set REQUIRE_BROWSER=1 to make this fail")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def e2e_user(transactional_db):
    """A user in a role. Groups are created here too: a live_server test flushes the
    database afterwards, taking the migration-made groups with it."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    def make(role: str = "operator", username: str | None = None):
        user, _ = get_user_model().objects.get_or_create(username=username or f"{role}-e2e")
        user.set_password(PASSWORD)
        user.is_staff = role == "support"
        user.save()
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        if role != "support":
            grant_microgrids(user, ALL_MICROGRIDS)
        return user

    return make


@pytest.fixture
def login_page(browser, live_server, e2e_user):
    """login_page(role, username) -> a Playwright page in its own context (its own
    cookies, like a second browser), logged in through the real login form."""
    contexts = []

    def make(role: str = "operator", username: str | None = None):
        user = e2e_user(role, username)
        context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto("/accounts/login/?next=/manage/microgrids/")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        if "/accounts/login/" in page.url:
            pytest.fail(f"could not log in as {user.get_username()} through the login form")
        # Off the fleet overview it landed on: that page refreshes itself (live.js), and its
        # reads would hold SQLite's in-memory tables while a test writes its fixtures.
        page.goto("about:blank")
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(login_page):
    return login_page("operator")


@pytest.fixture
def screenshot():
    """screenshot(page, name): a full-page PNG in $SCREENSHOT_DIR, when that is set."""

    def take(page, name: str) -> Path | None:
        directory = os.environ.get("SCREENSHOT_DIR")
        if not directory:
            return None
        path = Path(directory) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
