"""Headless Chromium, two people: an SRE requests a deploy to an environment that
needs one approval in the control plane; the deploy waits at the gate and the
requester cannot approve it (two-person rule); a second SRE opens the link the
notification carries, approves with a reason, and the deploy goes on to succeed.
Screenshots (1366×900) under ``var/screenshots/signoff-*.png``."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.models import AuditEvent
from deploys.models import DeployRun
from githubsim import Simulator
from tests import browsing
from tests.browsing import new_page, sign_in
from tests.conftest import make_user
from tests.deploying import Clock, drive, final, simulated_env
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
    pytest.mark.sim(
        time_scale=600,
        seed=13,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]

REFRESH_TIMEOUT_MS = 15_000


def signed_in(browser: Any, base: str, user: User, next_path: str) -> Any:
    """A page of its own browser context (its own session) signed in as ``user``."""
    page = new_page(browser)
    sign_in(page, base, user, next_path)
    return page


def screenshot(page: Any, name: str) -> None:
    browsing.screenshot(page, f"signoff-{name}", full_page=True)


def awaiting(run: DeployRun) -> bool:
    return run.events.filter(kind="gate_waiting", detail__has_key="signoff").exists()


def test_the_requester_cannot_approve_and_a_second_sre_lets_the_deploy_go(
    live_server: Any, sim: Simulator, sre: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    carol = make_user("carol-sre", "sre")
    simulated_env(sim, signoffs_required=1)
    base = live_server.url
    clock = Clock()

    # The requester asks for the deploy on the form.
    mine = signed_in(browser, base, sre, "/deploys/new/")
    mine.select_option("select[name=environment]", "production")
    mine.fill("input[name=ref]", "main")
    mine.click("#deploy-submit")
    mine.wait_for_url(re.compile(rf"{re.escape(base)}/deploys/\d+/$"))
    run = DeployRun.objects.get()
    run = drive(run, awaiting, clock)
    mine.reload()

    expect(mine.locator("#run-headline")).to_contain_text(
        "Awaiting approvals in the control plane: 0 of 1, from any SRE but sam-sre"
    )
    expect(mine.locator("#signoff-awaited")).to_contain_text(
        "1 more from any SRE but sam-sre"
    )
    expect(mine.locator("#signoff-blocked")).to_contain_text(
        "You requested this deploy: another SRE must approve it (two-person rule)."
    )
    expect(mine.locator("#signoff-approve-button")).to_have_count(0)
    screenshot(mine, "1-requester-waits")

    # The notification's link, opened by the requester: no form, and a forged
    # POST is refused with the reason.
    mine.goto(f"{base}/deploys/{run.pk}/signoff/")
    expect(mine.locator("#signoff-approve-button")).to_have_count(0)
    mine.evaluate(
        """pk => fetch(`/deploys/${pk}/signoff/`, {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded',
                       'X-CSRFToken': document.cookie.match(/csrftoken=([^;]+)/)[1]},
             body: 'decision=approve', redirect: 'manual'})""",
        run.pk,
    )
    mine.reload()
    expect(mine.locator("body")).to_contain_text(
        f"Not recorded: you requested deploy #{run.pk}: another SRE must approve it"
    )
    screenshot(mine, "2-requester-refused")

    # A second SRE follows the link in the notification and approves.
    theirs = signed_in(browser, base, carol, f"/deploys/{run.pk}/signoff/")
    expect(theirs.locator("h1")).to_contain_text(f"Approve deploy #{run.pk}")
    screenshot(theirs, "3-second-sre-link")
    theirs.fill("#signoff-reason", "diff reviewed")
    theirs.click("#signoff-approve-button")
    theirs.wait_for_url(f"{base}/deploys/{run.pk}/")
    expect(theirs.locator("body")).to_contain_text(
        f"Deploy #{run.pk}: approved in the control plane."
    )
    expect(theirs.locator('[data-approved-by="carol-sre"]')).to_contain_text(
        "diff reviewed"
    )

    # Both deploy pages poll; on the embedded SQLite their reads would lock the
    # tables the engine writes here, so the browsers wait elsewhere meanwhile.
    mine.goto("about:blank")
    theirs.goto("about:blank")
    run = drive(run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED

    # The requester's page (live, htmx) shows it went, approved by carol.
    mine.goto(f"{base}/deploys/{run.pk}/")
    expect(mine.locator("#run-state")).to_have_text(
        "succeeded", timeout=REFRESH_TIMEOUT_MS
    )
    expect(mine.locator("#signoff-why")).to_contain_text("Approved by carol-sre")
    expect(mine.locator('[data-event="signed_off"]')).to_contain_text(
        "approved by carol-sre in the control plane"
    )
    screenshot(mine, "4-succeeded")
    assert list(
        AuditEvent.objects.filter(action="deploy.signoff_approve")
        .order_by("pk")
        .values_list("actor_name", "outcome")
    ) == [("sam-sre", "denied"), ("carol-sre", "success")]
