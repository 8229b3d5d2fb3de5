"""Headless Chromium watches the fleet page while a simulated runner host dies: the
badge turns unhealthy through the page's htmx refresh, without a reload."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from githubsim import Simulator
from runners import health
from runners.models import Reason, Runner, State
from tests.conftest import PASSWORD
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    # live_server empties the tables after each test; serialized rollback puts back
    # what the migrations made (the role groups) for the tests that follow.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]

NAME = "prod-primary-1"
# Short enough for a quick test, long enough that a heartbeat every 0.5 s keeps the
# runner comfortably fresh on a busy machine.
STALE_AFTER = 3


@pytest.fixture
def heartbeating_sim(live_server: Any, settings: Any) -> Iterator[Simulator]:
    # Not the shared ``sim``: its hosts heartbeat to this test's live server, whose
    # address exists only once that fixture has started.
    settings.HEARTBEAT_STALE_AFTER = STALE_AFTER
    with Simulator(
        heartbeat_url=f"{live_server.url}/heartbeat", heartbeat_interval=0.5
    ) as simulator:
        yield simulator


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def heartbeat_deadline() -> Any:
    return Runner.objects.values_list("heartbeat_deadline", flat=True).get(name=NAME)


def test_fleet_page_shows_a_killed_runner_turning_unhealthy(
    live_server: Any,
    heartbeating_sim: Simulator,
    viewer: User,
    page: Any,
    settings: Any,
) -> None:
    from playwright.sync_api import expect

    # A registered runner whose host heartbeats with its own token.
    runner = Runner.objects.create(name=NAME, labels=["self-hosted", "linux"])
    heartbeating_sim.add_runner(NAME, labels=["self-hosted", "linux"])
    heartbeating_sim.set_heartbeat_token(
        NAME, runner.issue_heartbeat_token("ada-admin")
    )
    assert wait_for(lambda: heartbeat_deadline() is not None), "no heartbeat arrived"
    for _ in range(settings.HEALTH_RISE_AFTER):
        health.sweep()
    runner.refresh_from_db()
    assert runner.state == State.HEALTHY

    page.goto(f"{live_server.url}/accounts/login/?next=/fleet/")
    page.fill("input[name=username]", viewer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/fleet/")
    badge = page.locator(f'tr[data-runner="{NAME}"] td.state .badge').first
    expect(badge).to_have_text("healthy")
    page.evaluate("window.loadedOnce = true")

    # The host dies: its heartbeats stop, so the deadline they kept pushing passes.
    heartbeating_sim.kill(NAME)
    assert wait_for(lambda: heartbeat_deadline() < timezone.now()), (
        "heartbeats went on after the host was killed"
    )
    for _ in range(settings.HEALTH_FALL_AFTER):
        health.sweep()
    runner.refresh_from_db()
    assert (runner.state, runner.reason) == (State.UNHEALTHY, Reason.HEARTBEAT_STALE)

    # htmx polls the table every 5 s: the badge changes in place, no reload.
    expect(badge).to_have_text("unhealthy", timeout=15_000)
    assert page.evaluate("window.loadedOnce") is True
    row = page.locator(f'tr[data-runner="{NAME}"]')
    expect(row).to_contain_text(Reason.HEARTBEAT_STALE.label)
    expect(page.locator('[data-count="unhealthy"] .figure')).to_have_text("1")
