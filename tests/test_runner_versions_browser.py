"""An SRE finds outdated runners and a pool runner missing its name label in a real
browser: the fleet's version filter, the row badges and the runner page's card
(1366x900 screenshots under ``var/screenshots/``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from runners.models import Runner
from tests.conftest import PASSWORD, ROOT
from tests.factories import make_env
from tests.processes import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]

SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


def test_an_sre_filters_outdated_runners_and_reads_why(
    live_server: Any, viewer: User, browser_page: Any
) -> None:
    from playwright.sync_api import expect

    common = {"state": "healthy", "reason": "", "github_id": None}
    current = Runner.objects.create(
        name="prod-1",
        runner_version="2.330.0",
        runner_version_source="github",
        labels=["self-hosted", "prod-1"],
        **common,
    )
    old = Runner.objects.create(
        name="prod-2",
        runner_version="2.300.0",
        runner_version_source="github",
        version_outdated="below_minimum",
        version_note="2.300.0 is below the minimum 2.320.0",
        labels=["self-hosted", "prod-2"],
        **common,
    )
    unlabelled = Runner.objects.create(
        name="prod-3",
        runner_version="2.330.0",
        runner_version_source="heartbeat",
        missing_name_label=True,
        labels=["self-hosted", "deploy"],
        **{**common, "github_id": 3},
    )
    make_env("production", current, old, unlabelled)

    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/?next=/fleet/")
    page.fill("input[name=username]", viewer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/fleet/")
    expect(
        page.locator('tr[data-runner="prod-2"] [data-flag="version_outdated"]')
    ).to_be_visible()
    expect(
        page.locator('tr[data-runner="prod-3"] [data-flag="missing_name_label"]')
    ).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "fleet-versions.png"), full_page=True)

    page.select_option("select[name=version_outdated]", "true")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr[data-runner]")).to_have_count(1)
    expect(page.locator('tr[data-runner="prod-2"]')).to_be_visible()

    page.fill("input[name=version]", "2.330.0")
    page.select_option("select[name=version_outdated]", "")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr[data-runner]")).to_have_count(2)

    page.goto(f"{live_server.url}/fleet/prod-2/")
    expect(page.locator("#eligibility")).to_contain_text(
        "runner version outdated: 2.300.0 is below the minimum 2.320.0"
    )
    expect(page.locator("#version-note")).to_contain_text("GitHub refuses jobs to it")
    page.screenshot(
        path=str(SCREENSHOTS / "runner-version-outdated.png"), full_page=True
    )

    page.goto(f"{live_server.url}/fleet/prod-3/")
    expect(page.locator("#name-label")).to_contain_text("missing its name label prod-3")
    page.screenshot(
        path=str(SCREENSHOTS / "runner-missing-name-label.png"), full_page=True
    )
