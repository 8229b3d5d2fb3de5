"""Headless Chromium on a deploy held by its GitHub environment's required reviewers:
the page says what it waits for, the SRE (through the control plane's GitHub user, a
reviewer) approves it with a comment, and the deploy goes on to succeed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User

from controlplane.models import AuditEvent
from deploys.models import DeployRun
from deploys.triggers import request_deploy
from githubsim import Simulator
from githubsim.state.core import ACTOR_ID
from tests.conftest import PASSWORD
from tests.deploying import REPO, Clock, drive, final, simulated_env
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
        cancel_delay=3,
        connect=True,
        max_retries=1,
    ),
]

REFRESH_TIMEOUT_MS = 15_000
REFERENCE_WORKFLOW = Path(__file__).parent.parent / "deploys/workflows/deploy.yml"


@pytest.fixture(autouse=True)
def reference_workflow(sim: Simulator) -> None:
    """The shipped workflow: its deploy job declares ``environment:`` from the input."""
    sim.set_workflow(yaml=REFERENCE_WORKFLOW.read_text())


def test_sre_approves_a_held_deploy_on_its_page_and_it_goes_on(
    live_server: Any, sim: Simulator, sre: User, page: Any
) -> None:
    from playwright.sync_api import expect

    response = requests.put(
        f"{sim.url}/repos/{REPO}/environments/production",
        json={"reviewers": [{"type": "User", "id": ACTOR_ID}]},
        headers={"Authorization": "token admin"},
        timeout=10,
    )
    assert response.status_code == 200
    env = simulated_env(sim)
    clock = Clock()
    run = request_deploy(sre, env, "main", idempotency_key="k1").run
    run = drive(run, lambda r: r.events.filter(kind="approval_waiting").exists(), clock)
    base = live_server.url
    page.goto(f"{base}/accounts/login/?next=/deploys/{run.pk}/")
    page.fill("input[name=username]", sre.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/deploys/{run.pk}/")
    expect(page.locator("#run-approval")).to_contain_text(
        "waiting for approval in GitHub: required reviewers deploy-bot"
    )

    page.fill("#review-comment", "change window open")
    page.click("#approve-button")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/deploys/{run.pk}/$"))
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    expect(page.locator("#run-state")).to_have_text(
        "succeeded", timeout=REFRESH_TIMEOUT_MS
    )
    expect(page.locator('[data-event="approval_sent"]')).to_contain_text(
        "sam-sre approved the deploy to production in GitHub: change window open"
    )
    expect(page.locator("#run-approval")).to_have_count(0)
    assert AuditEvent.objects.filter(action="deploy.review").count() == 1
