"""Headless Chromium shows a runner's canary history the way an SRE reads it: one
square per canary, green passed, red failed or not picked up, grey in flight, the
latest one's reason and the runbook; a 1366×900 screenshot under var/screenshots/."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from diagnostics.models import HostRun
from runners.models import Reason, State
from tests.browsing import new_page, screenshot, sign_in
from tests.factories import make_env, pool_runner
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]

NAME = "prod-primary-1"


def test_the_runner_page_shows_the_canary_strip(
    live_server: Any, browser: Any, sre: User
) -> None:
    from playwright.sync_api import expect

    now = timezone.now()
    runner = pool_runner(
        NAME,
        state=State.DEGRADED,
        github_status="online",
        canary_failing=True,
        canary_checked_at=now,
    )
    runner.reason = Reason.CANARY_FAILED
    runner.save(update_fields=["reason"])
    make_env("production", runner)
    outcomes = [HostRun.State.SUCCEEDED] * 6 + [
        HostRun.State.FAILED,
        HostRun.State.SUCCEEDED,
        HostRun.State.TIMED_OUT,
    ]
    for n, state in enumerate(outcomes):
        requested = now - timedelta(minutes=30 * (len(outcomes) - n))
        HostRun.objects.create(
            runner=runner,
            kind=HostRun.Kind.CANARY,
            requested_by="canary",
            state=state,
            requested_at=requested,
            deadline=requested + timedelta(minutes=5),
            started_at=None
            if state == HostRun.State.TIMED_OUT
            else requested + timedelta(seconds=4),
            finished_at=requested + timedelta(seconds=30),
            github_run_id=1000 + n,
            detail="not picked up within 300 s: prod-primary-1 is online and idle "
            "for GitHub yet took no job"
            if state == HostRun.State.TIMED_OUT
            else "",
        )
    HostRun.objects.create(
        runner=runner,
        kind=HostRun.Kind.CANARY,
        requested_by="canary",
        state=HostRun.State.RUNNING,
        requested_at=now,
        deadline=now + timedelta(minutes=5),
    )

    page = new_page(browser)
    sign_in(page, live_server.url, sre, f"/fleet/{NAME}/")
    strip = page.locator("#canary-strip li")
    expect(strip).to_have_count(10)
    classes = [strip.nth(i).get_attribute("class") for i in range(10)]
    assert classes == ["canary-pass"] * 6 + [
        "canary-fail",
        "canary-pass",
        "canary-fail",
        "canary-none",
    ]
    # Styled by the static file (the CSP allows no inline styles): real colours.
    colours = {
        strip.nth(i).evaluate("e => getComputedStyle(e).backgroundColor")
        for i in (0, 6, 9)
    }
    assert len(colours) == 3
    expect(page.locator("#canary-latest")).to_contain_text("running")
    expect(page.locator("#canary")).to_contain_text("Runbook: canary failed")
    expect(strip.nth(8)).to_have_attribute("title", re.compile("not picked up"))
    page.locator("#canary").scroll_into_view_if_needed()
    screenshot(page, "canary-strip")
