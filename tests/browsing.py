"""The browser tests' one headless Chromium (Debian's, driven by Playwright): the
``browser`` and ``page`` fixtures (a plugin ``tests/conftest.py`` loads, so every
test file has them), pages of their own sessions, signing in and screenshots at 1366×900 under
``var/screenshots/``.

Every page records what it loaded (``page.requested``: the UI works offline, with
nothing from a CDN), what went wrong (``page.problems``: console errors and
warnings, 4xx/5xx answers, uncaught errors) and the Content-Security-Policy
violations it reports (``window.cspViolations``, from before any of its scripts
run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import PASSWORD
from tests.processes import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
VIEWPORT = {"width": 1366, "height": 900}

WATCH_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`
  );
});
"""


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium for one test; each :func:`new_page` is its own session."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses
    # to be called from a thread with a running loop unless told it is safe here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Any:
    """One page, signed in to nothing yet."""
    return new_page(browser)


def new_page(browser: Any, *, javascript: bool = True) -> Any:
    """A page in a session of its own (``javascript=False``: as a browser without
    scripts sees the site), watched as the module says."""
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=javascript)
    context.add_init_script(WATCH_VIOLATIONS)
    page: Any = context.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.requested = requested
    page.problems = problems
    page.on("request", lambda r: requested.append(r.url))
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            # Named by the response handler below, with its URL.
            and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400
            # Chromium asks for it on its own; the app has no favicon.
            and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return page


def sign_in(page: Any, base: str, user: User, next_path: str) -> None:
    """Sign in through the login form and land on ``next_path``."""
    page.goto(f"{base}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """``var/screenshots/<name>.png``: the viewport, or the whole page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
