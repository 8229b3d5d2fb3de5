"""Headless Chromium meets the promotion rule: production refuses a commit staging
has not run, the refusal names staging and offers the deploy there, the offer opens
staging's form with the same ref and commit, and once staging has run it production
takes it; a deploy the gate refused offers the same on its page. Screenshots:
``var/screenshots/deploy-not-promoted.png``, ``deploy-promote-offer.png``,
``deploy-run-not-promoted.png`` and the environment page's rules,
``environment-rules.png``."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth.models import User

from deploys.models import DeployRun, Environment
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.browsing import new_page, screenshot, sign_in
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
        seed=18,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]


def test_an_unpromoted_commit_is_refused_with_a_way_through_staging(
    live_server: Any, sim: Simulator, sre: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    staging = simulated_env(sim, ("staging-1",), name="staging")
    simulated_env(sim, promote_from=staging, allowed_refs="refs/heads/main")
    sha = sim.push("main")
    base = live_server.url
    page = new_page(browser)
    sign_in(page, base, sre, "/deploys/new/?environment=production")

    page.fill("input[name=ref]", "main")
    page.click("#deploy-submit")
    refusal = page.locator("#refusal")
    expect(refusal).to_contain_text(f"{sha[:12]} (main) is not promoted to production")
    expect(refusal).to_contain_text("succeeded in staging within 7 days")
    offer = page.locator("#promote-link")
    expect(offer).to_have_text(f"Deploy main @ {sha[:12]} to staging first…")
    screenshot(page, "deploy-not-promoted")
    assert not DeployRun.objects.exists()

    offer.click()
    page.wait_for_url(f"{base}/deploys/new/?environment=staging*")
    expect(page.locator("select[name=environment]")).to_have_value("staging")
    expect(page.locator("input[name=ref]")).to_have_value("main")
    expect(page.locator("input[name=sha]")).to_have_value(sha)
    screenshot(page, "deploy-promote-offer")
    page.click("#deploy-submit")
    page.wait_for_url(f"{base}/deploys/*/")
    staged = DeployRun.objects.get()
    assert (staged.environment.name, staged.sha) == ("staging", sha)
    assert drive(staged, final, Clock()).state == DeployRun.State.SUCCEEDED

    page.goto(f"{base}/deploys/new/?environment=production")
    page.fill("input[name=ref]", "main")
    page.click("#deploy-submit")
    page.wait_for_url(f"{base}/deploys/*/")
    assert DeployRun.objects.get(environment__name="production").sha == sha

    page.goto(f"{base}/deploys/environments/production/")
    expect(page.locator("#env-promotion")).to_contain_text(
        "only commits that succeeded in staging within 7 days"
    )
    expect(page.locator("#env-allowed-refs")).to_contain_text("refs/heads/main")
    page.locator("#env-promotion").scroll_into_view_if_needed()
    screenshot(page, "environment-rules")


def test_a_deploy_the_gate_refused_as_not_promoted_offers_staging_on_its_page(
    live_server: Any, sim: Simulator, sre: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    staging = simulated_env(sim, ("staging-1",), name="staging")
    production = simulated_env(sim)
    sha = sim.push("main")
    run = request_deploy(sre, production, "main").run
    # An admin sets the rule while the deploy waits: the gate refuses it.
    Environment.objects.filter(pk=production.pk).update(promote_from=staging)
    assert drive(run, final, Clock()).reason == DeployRun.Reason.NOT_PROMOTED
    base = live_server.url
    page = new_page(browser)
    sign_in(page, base, sre, f"/deploys/{run.pk}/")

    expect(page.locator("#run-message")).to_contain_text("is not promoted")
    expect(page.locator("#run-gate-wait")).to_contain_text("stopped at the gate")
    offer = page.locator("#promote-link")
    expect(offer).to_have_text(f"Deploy main @ {sha[:12]} to staging first…")
    screenshot(page, "deploy-run-not-promoted", full_page=True)

    offer.click()
    page.wait_for_url(f"{base}/deploys/new/?environment=staging*")
    expect(page.locator("select[name=environment]")).to_have_value("staging")
    expect(page.locator("input[name=ref]")).to_have_value("main")
    expect(page.locator("input[name=sha]")).to_have_value(sha)
