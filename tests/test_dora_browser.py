"""Headless Chromium on the environment page's deploy outcomes: the four figures,
the three charts drawn without a CSP violation, each mark's details in its title,
the tables behind a disclosure, nothing overflowing; a 1366×900 screenshot under
``var/screenshots/``."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from deploys.models import DeployRun
from tests.browsing import SCREENSHOTS, screenshot
from tests.conftest import PASSWORD
from tests.factories import pool_runner
from tests.processes import CHROMIUM
from tests.test_dora import committed, deploy, failed, old_env, seed_failures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]


def test_the_environment_page_draws_the_deploy_outcomes(
    live_server: Any, sre: User, page: Any
) -> None:
    from playwright.sync_api import expect

    now = timezone.now()
    env = old_env("production", pool_runner("p1"), pool_runner("s1"))
    seed_failures(env, now=now)
    committed(1, 10 + 2 / 24, now=now)
    committed(4, 4, now=now)
    for day in range(1, 3):  # a busier last few days, and a failure not restored
        deploy(env, 10 + day, day + 0.3, now=now)
        committed(10 + day, day + 0.5, now=now)
    failed(env, 20, 0.2, DeployRun.Reason.DEPLOY_FAILED, now=now)
    base = live_server.url

    page.goto(f"{base}/accounts/login/?next=/deploys/environments/production/")
    page.fill("input[name=username]", sre.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/deploys/environments/production/")

    dora = page.locator("#dora")
    expect(dora.locator("#dora-failure-rate .figure")).to_have_text(
        "50 %"
    )  # 4 of 8 changes
    expect(dora.locator("#dora-frequency .figure")).to_have_text("0.17 / day")
    expect(dora.locator("#dora-restore .figure")).to_have_class("figure failing")
    expect(dora.locator("#dora-notes")).to_contain_text("Still failing since")
    expect(dora.locator("#dora-lead circle")).to_have_count(4)
    expect(dora.locator("#dora-restores rect.bar-failing")).to_have_count(1)
    expect(dora.locator("#dora-restores rect.bar-restored")).to_have_count(3)
    titles = dora.locator("#dora-restores rect title").all_text_contents()
    assert any("still failing: no good deploy since" in t for t in titles), titles
    # The charts are drawn: the stylesheet applied (a bar is filled, not black).
    fill = dora.locator("#dora-per-day rect.bar-succeeded").first.evaluate(
        "e => getComputedStyle(e).fill"
    )
    assert fill not in ("", "rgb(0, 0, 0)"), fill
    assert page.evaluate("window.cspViolations") == []
    wide = page.eval_on_selector_all(
        "#dora, #dora *",
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
        ".filter(e => !(e instanceof SVGElement)).map(e => e.id || e.tagName)",
    )
    assert wide == []
    expect(page.locator("#dora-tables table")).to_have_count(3)
    expect(page.locator("#dora-failure-table")).to_be_hidden()
    page.click("#dora-tables summary")
    expect(page.locator("#dora-failure-table tbody tr")).to_have_count(4)

    page.click("#dora-tables summary")
    dora.scroll_into_view_if_needed()
    screenshot(page, "dora-environment")
    dora.screenshot(path=str(SCREENSHOTS / "dora-outcomes.png"))
