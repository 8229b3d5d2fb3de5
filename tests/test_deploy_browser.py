"""Headless Chromium requests a deploy through the form and watches its timeline while
the engine drives it against the GitHub simulator: once to success, once through a
failover after the primary's host dies mid-job. The page changes through its htmx
refresh, without a reload."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from deploys import engine
from deploys.models import DeployRun, Environment
from githubsim import Simulator
from runners.models import State
from tests.conftest import PASSWORD
from tests.deploying import (
    PRIMARY,
    SECONDARY,
    Clock,
    drive,
    final,
    mark,
    simulated_env,
)
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
    # 600 simulated seconds a real second: pickups and jobs take milliseconds.
    pytest.mark.sim(
        time_scale=600,
        seed=7,
        pickup_delay=5,
        job_duration=20,
        cancel_delay=3,
        connect=True,
        max_retries=1,
    ),
]

# The detail page polls every 2 s; a few polls of slack for a busy machine.
REFRESH_TIMEOUT_MS = 15_000


def request_through_the_form(page: Any, base: str, user: User) -> DeployRun:
    """Sign in, submit the trigger form, land on the new deploy's page."""
    from playwright.sync_api import expect

    page.goto(f"{base}/accounts/login/?next=/deploys/new/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/deploys/new/")
    # No environment is chosen for you: pick it, the preview follows.
    page.select_option("select[name=environment]", Environment.objects.get().name)
    expect(page.locator("[data-chosen]")).to_have_text(PRIMARY)
    page.fill("input[name=ref]", "v1.0")
    page.click("form[aria-label=Deploy] button[type=submit]")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/deploys/\d+/$"))
    run_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    run = DeployRun.objects.get(pk=run_id)
    assert (run.ref, run.requester_name) == ("v1.0", user.username)
    expect(page.locator("#run-state")).to_have_text("queued")
    page.evaluate("window.loadedOnce = true")
    return run


def test_deploy_requested_in_the_form_reaches_succeeded_on_the_live_timeline(
    live_server: Any, sim: Simulator, sre: User, page: Any
) -> None:
    from playwright.sync_api import expect

    simulated_env(sim)
    sim.create_tag("v1.0")  # the ref the form requests
    run = request_through_the_form(page, live_server.url, sre)

    run = drive(run, final, Clock())

    assert run.state == DeployRun.State.SUCCEEDED
    expect(page.locator("#run-state")).to_have_text(
        "succeeded", timeout=REFRESH_TIMEOUT_MS
    )
    attempt = page.locator('tr[data-attempt="1"]')
    expect(attempt.locator(".attempt-runner")).to_contain_text(PRIMARY)
    expect(attempt.locator(".attempt-state")).to_contain_text("succeeded")
    expect(page.locator('[data-event="picked_up"]')).to_have_count(1)
    expect(page.locator("#run-timeline")).to_contain_text(f"{PRIMARY} (primary")
    # The final page stops polling and offers no cancel.
    expect(page.locator("#run-live")).not_to_have_attribute(
        "hx-trigger", re.compile(".")
    )
    expect(page.locator("#cancel-button")).to_have_count(0)
    assert page.evaluate("window.loadedOnce") is True


def test_primary_killed_mid_job_shows_the_failover_on_the_live_timeline(
    live_server: Any, sim: Simulator, sre: User, page: Any, settings: Any
) -> None:
    from playwright.sync_api import expect

    settings.DEPLOY_FORCE_CANCEL_AFTER = 5.0
    # A long job, so the primary is still running it when its host dies.
    sim.configure(job_duration=3600)
    simulated_env(sim)
    sim.create_tag("v1.0")  # the ref the form requests
    run = request_through_the_form(page, live_server.url, sre)
    clock = Clock()
    run = drive(run, lambda r: r.attempts.get().picked_up_at is not None, clock)
    expect(page.locator('tr[data-attempt="1"] .attempt-state')).to_contain_text(
        "running", timeout=REFRESH_TIMEOUT_MS
    )

    # The primary's host dies mid-job; the health sweep marks it unhealthy.
    sim.kill(PRIMARY)
    mark(PRIMARY, State.UNHEALTHY)
    sim.configure(job_duration=20)
    engine.advance(run.pk, now=clock())
    clock.jump(6)  # the dead runner cannot acknowledge the cancel: force it
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first = page.locator('tr[data-attempt="1"]')
    second = page.locator('tr[data-attempt="2"]')
    expect(second.locator(".attempt-runner")).to_contain_text(
        SECONDARY, timeout=REFRESH_TIMEOUT_MS
    )
    expect(first.locator(".attempt-failover")).to_contain_text(
        "the runner turned unhealthy"
    )
    expect(first.locator(".attempt-state")).to_contain_text("cancelled")
    expect(page.locator('[data-event="failover"]')).to_have_count(1)
    expect(page.locator('[data-event="force_cancel_sent"]')).to_have_count(1)
    # The second gate decision says why the primary was passed over.
    expect(page.locator("#run-timeline")).to_contain_text(
        f"{PRIMARY} (primary, unhealthy): passed over"
    )
    expect(page.locator("#run-state")).to_have_text(
        "succeeded", timeout=REFRESH_TIMEOUT_MS
    )
    expect(second.locator(".attempt-state")).to_contain_text("succeeded")
    assert page.evaluate("window.loadedOnce") is True
