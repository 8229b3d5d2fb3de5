"""Headless Chromium rolls production back: the environment page's history by commit,
"Roll back…", the confirmation naming both SHAs, the new deploy driven to success
against the GitHub simulator, and "Deployed now" showing the older commit again."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.models import AuditEvent
from deploys.models import DeployRun
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.conftest import PASSWORD
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
        seed=7,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]

REFRESH_TIMEOUT_MS = 15_000


def test_rollback_from_the_environment_page_redeploys_the_previous_commit(
    live_server: Any, sim: Simulator, sre: User, page: Any
) -> None:
    from playwright.sync_api import expect

    env = simulated_env(sim)
    clock = Clock()
    old = drive(request_deploy(sre, env, "main").run, final, clock)
    sim.push("main")
    new = drive(request_deploy(sre, env, "main").run, final, clock)
    assert old.state == new.state == DeployRun.State.SUCCEEDED
    assert old.sha != new.sha
    base = live_server.url

    page.goto(f"{base}/accounts/login/?next=/deploys/environments/production/")
    page.fill("input[name=username]", sre.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/deploys/environments/production/")
    history = page.locator("#env-history tbody tr")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_have_attribute("data-sha", new.sha)
    expect(history.nth(1)).to_have_attribute("data-sha", old.sha)

    page.click("#rollback-button")
    page.wait_for_url(f"{base}/deploys/environments/production/rollback/")
    expect(page.locator("#rollback-from")).to_have_text(new.sha)
    expect(page.locator("#rollback-to")).to_have_text(old.sha)
    page.click("#confirm-rollback")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/deploys/\d+/$"))
    expect(page.locator("body")).to_contain_text(f"back to {old.sha[:12]}")

    rollback = DeployRun.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    assert (rollback.sha, rollback.ref) == (old.sha, "main")
    rollback = drive(rollback, final, clock)
    assert rollback.state == DeployRun.State.SUCCEEDED
    expect(page.locator("#run-state")).to_have_text(
        "succeeded", timeout=REFRESH_TIMEOUT_MS
    )
    audit = AuditEvent.objects.get(action="deploy.rollback")
    assert (audit.detail["from_sha"], audit.detail["to_sha"]) == (new.sha, old.sha)

    page.click("nav >> text=Deployed now")
    page.wait_for_url(f"{base}/deploys/deployed/")
    row = page.locator('#deployed-now tr[data-environment="production"]')
    expect(row.locator("[data-sha]")).to_have_attribute("data-sha", old.sha)
    expect(row.locator("a.compare")).to_have_attribute(
        "href", re.compile(rf"/compare/{new.sha}\.\.\.{old.sha}$")
    )
