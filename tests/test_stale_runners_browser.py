"""Headless Chromium: an SRE opens Stale runners from the navigation, sees why each
runner is proposed and when GitHub removes it, removes one from GitHub (the
simulator), and cannot remove the one still in a pool."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from githubsim import Simulator
from runners import sync
from runners.models import Runner
from tests.browsing import new_page, screenshot, sign_in
from tests.factories import make_env
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
    pytest.mark.sim(time_scale=60, seed=3, offline_lag=0.0, connect=True),
]


def test_sre_removes_a_stale_runner_and_not_the_pool_one(
    live_server: Any,
    sim: Simulator,
    sre: User,
    browser: Any,
) -> None:
    from playwright.sync_api import expect

    names = ("build-old-1", "build-old-2", "prod-secondary-3", "build-fresh-4")
    for name in names:
        sim.add_runner(name, ["self-hosted", name])
    sync.sync_fleet()
    for name in names:
        sim.kill(name)
    assert sim.wait_until(
        lambda: all(sim.state.runner(n).status == "offline" for n in names)
    )
    sync.sync_fleet()
    now = timezone.now()
    for name, days in zip(names, (13.5, 12.2, 12.9, 3), strict=True):
        Runner.objects.filter(name=name).update(
            offline_since=now - timedelta(days=days),
            last_heartbeat_at=now - timedelta(days=days, minutes=3),
        )
    primary = Runner.objects.create(name="prod-primary-1", github_status="online")
    make_env("production", primary, Runner.objects.get(name="prod-secondary-3"))

    page = new_page(browser)
    sign_in(page, live_server.url, sre, "/fleet/")
    page.get_by_role("link", name="Stale runners").click()
    page.wait_for_url(f"{live_server.url}/retention/")
    rows = page.locator("tbody tr[data-runner]")
    expect(rows).to_have_count(3)  # not the runner offline for 3 days
    old = page.locator('tr[data-runner="build-old-1"]')
    expect(old).to_contain_text("GitHub has reported it offline for 13 days")
    removes_by = (now - timedelta(days=13.5) + timedelta(days=14)).strftime("%Y-%m-%d")
    expect(old).to_contain_text(removes_by)
    expect(old).to_contain_text("in 11\u00a0hours")
    pooled = page.locator('tr[data-runner="prod-secondary-3"]')
    expect(pooled).to_contain_text("production secondary #1")
    expect(pooled).to_contain_text("take it out of the pool first")
    expect(pooled.locator("button")).to_have_count(0)
    screenshot(page, "stale-runners")

    old.get_by_role("button", name="Remove build-old-1 from GitHub").click()
    page.wait_for_url(f"{live_server.url}/retention/")
    expect(page.locator(".messages")).to_contain_text(
        "build-old-1 is removed from GitHub"
    )
    expect(rows).to_have_count(2)
    screenshot(page, "stale-runners-removed")
    assert sim.state.find_runner("build-old-1") is None
    assert sim.state.find_runner("prod-secondary-3") is not None
