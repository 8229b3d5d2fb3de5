"""Headless Chromium on the deploy pages an on-call SRE uses: a paused environment
(banner, disabled buttons, pause and resume), a deploy waiting at the gate
(countdown, live pool), a deploy after failover (the timeline's red mark, readable
without JavaScript) and the deploy form's production confirmation. Each test saves
a 1366×900 screenshot under ``var/screenshots/``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys.models import DeployAttempt, DeployEvent, DeployRun, Environment
from runners.models import Runner, State
from tests import test_oncall_browser as oncall
from tests.browsing import new_page, screenshot, sign_in

pytestmark = oncall.pytestmark

overflowing = oncall.overflowing
Kind = DeployEvent.Kind


def production() -> tuple[Runner, Runner, Environment]:
    primary, secondary, prod = oncall.failover_scene()
    Environment.objects.filter(pk=prod.pk).update(production=True)
    prod.refresh_from_db()
    return primary, secondary, prod


def event(run: DeployRun, kind: str, at: Any, message: str, **kw: Any) -> None:
    DeployEvent.objects.create(run=run, kind=kind, message=message, created_at=at, **kw)


def failed_over_deploy(primary: Runner, secondary: Runner, env: Environment) -> int:
    """Deploy of main: 62 s at the gate, prod-primary-1 picked it up and died, the
    deploy failed over to prod-secondary-1 and succeeded."""
    t0 = timezone.now() - timedelta(minutes=6)
    run = DeployRun.objects.create(
        environment=env,
        ref="main",
        sha="9f2c4e1a7b3d5f608192a3b4c5d6e7f809a1b2c3",
        requester_name="sam-sre",
        change_ticket="CHG-1042",
        state=DeployRun.State.SUCCEEDED,
        created_at=t0,
        gate_started_at=t0,
        started_at=t0,
        finished_at=t0 + timedelta(seconds=330),
        timeouts={"gate_timeout": 300, "pickup_timeout": 120},
    )
    event(run, Kind.REQUESTED, t0, "sam-sre requested main on production")
    event(run, Kind.GATING, t0, "checking the runner pool")
    event(
        run,
        Kind.GATE_WAITING,
        t0 + timedelta(seconds=1),
        "no healthy runner in the pool",
    )
    event(run, Kind.GATE_PASSED, t0 + timedelta(seconds=62), "goes to prod-primary-1")
    first = DeployAttempt.objects.create(
        run=run,
        number=1,
        runner=primary,
        state=DeployAttempt.State.CANCELLED,
        failover_reason=DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
        created_at=t0 + timedelta(seconds=62),
        dispatched_at=t0 + timedelta(seconds=63),
        picked_up_at=t0 + timedelta(seconds=75),
        finished_at=t0 + timedelta(seconds=170),
    )
    event(
        run,
        Kind.FAILOVER,
        t0 + timedelta(seconds=160),
        "prod-primary-1 turned unhealthy (heartbeat stale)",
        attempt=first,
    )
    event(
        run, Kind.GATE_PASSED, t0 + timedelta(seconds=163), "goes to prod-secondary-1"
    )
    DeployAttempt.objects.create(
        run=run,
        number=2,
        runner=secondary,
        state=DeployAttempt.State.SUCCEEDED,
        created_at=t0 + timedelta(seconds=163),
        dispatched_at=t0 + timedelta(seconds=164),
        picked_up_at=t0 + timedelta(seconds=171),
        finished_at=t0 + timedelta(seconds=330),
    )
    event(run, Kind.SUCCEEDED, t0 + timedelta(seconds=330), "deployed")
    return run.pk


def test_deploy_after_failover_draws_the_red_mark_without_javascript(
    live_server: Any, viewer: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    primary, secondary, prod = production()
    pk = failed_over_deploy(primary, secondary, prod)
    page = new_page(browser, javascript=False)
    sign_in(page, live_server.url, viewer, f"/deploys/{pk}/")

    expect(page.locator("#run-headline")).to_contain_text(
        "Succeeded on prod-secondary-1 after failover from prod-primary-1"
    )
    expect(page.locator("#run-gate-wait")).to_contain_text("waited at the gate 65 s")
    chart = page.locator("#run-chart svg")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    mark = page.locator("#run-chart .mark-failover line").bounding_box()
    # The red mark sits inside the chart, on the first attempt's lane, before the
    # second attempt's bar starts.
    assert box["x"] < mark["x"] < box["x"] + box["width"]
    second = page.locator('#run-chart g[data-lane="2"] rect').first.bounding_box()
    assert mark["x"] < second["x"]
    tooltip = page.locator("#run-chart .mark-failover title").text_content()
    assert "Failover at" in tooltip and "turned unhealthy" in tooltip
    assert overflowing(page, "#run-live, #run-chart, .headline") == []
    expect(page.locator("#redeploy-button")).to_have_count(0)  # a viewer

    js_page = new_page(browser)
    sign_in(js_page, live_server.url, viewer, f"/deploys/{pk}/")
    screenshot(js_page, "deploy-failover")


def test_deploy_at_the_gate_counts_down_and_shows_the_pool_live(
    live_server: Any, sre: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    primary, secondary, prod = production()
    oncall.kill(primary)
    oncall.kill(secondary)
    started = timezone.now() - timedelta(seconds=42)
    run = DeployRun.objects.create(
        environment=prod,
        ref="main",
        sha="9f2c4e1a7b3d5f608192a3b4c5d6e7f809a1b2c3",
        requester_name="sam-sre",
        state=DeployRun.State.GATING,
        created_at=started,
        gate_started_at=started,
        started_at=started,
        timeouts={"gate_timeout": 300},
    )
    event(run, Kind.GATING, started, "checking the runner pool")
    event(
        run,
        Kind.GATE_WAITING,
        started + timedelta(seconds=1),
        "no healthy runner in the pool",
        detail={"considered": []},
    )
    deadline = (started + timedelta(seconds=300)).strftime("%H:%M:%S")
    page = new_page(browser)
    sign_in(page, live_server.url, sre, f"/deploys/{run.pk}/")

    countdown = page.locator("#run-countdown")
    expect(countdown).to_contain_text(f"Fails at {deadline} UTC")
    expect(countdown).to_contain_text("unless a runner recovers")
    expect(page.locator("#run-state")).to_have_text("waiting at the gate")
    # Still at the gate: how long so far, not "passed the gate at once".
    gate = page.locator("#run-gate-wait")
    expect(gate).to_have_text(re.compile(r"^at the gate for \d+ s$"))
    assert int(gate.inner_text().split()[-2]) >= 42
    pool = page.locator("#run-pool")
    expect(pool.locator('li[data-pool-runner="prod-primary-1"]')).to_contain_text(
        "unhealthy"
    )
    runbook = page.locator("#run-runbook")
    expect(runbook).to_have_attribute("href", "/runbooks/deploy-waiting-for-runner/")
    assert not runbook.inner_text().startswith("/")  # its title, not its address
    expect(page.locator("#cancel-button")).to_be_visible()
    expect(page.locator("#redeploy-button")).to_have_count(0)
    assert overflowing(page, "#run-live, #run-chart, .headline, #run-pool") == []
    screenshot(page, "deploy-gating")

    # The page is live: a runner recovering shows within a refresh.
    Runner.objects.filter(pk=secondary.pk).update(
        state=State.HEALTHY,
        reason="",
        heartbeat_deadline=timezone.now() + timedelta(seconds=60),
        last_heartbeat_at=timezone.now(),
    )
    expect(
        pool.locator('li[data-pool-runner="prod-secondary-1"] .badge').first
    ).to_have_text("healthy", timeout=5_000)


def test_paused_environment_banner_disabled_buttons_pause_and_resume(
    live_server: Any, sre: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    production()
    page = new_page(browser)
    sign_in(page, live_server.url, sre, "/deploys/environments/production/")
    expect(page.locator("#deploy-button")).to_be_enabled()

    page.locator("#pause-box summary").click()
    page.fill("#pause-reason", "INC-4711: database failover in progress")
    page.click("#pause-button")
    page.wait_for_url(f"{live_server.url}/deploys/environments/production/")

    banner = page.locator("#env-banner")
    expect(banner).to_contain_text("Deploys to production are paused")
    expect(banner).to_contain_text("INC-4711: database failover in progress")
    expect(banner).to_contain_text("Paused by sam-sre")
    disabled = page.locator("#env-actions button[disabled]")
    expect(disabled).to_have_count(3)
    expect(page.locator("#env-blocked")).to_contain_text("paused")
    expect(page.locator("#env-last-good")).to_contain_text("prod-secondary-1")
    expect(page.locator("#env-active")).to_have_text("Active: none.")
    assert overflowing(page, ".banner, .card, #env-actions") == []
    assert AuditEvent.objects.filter(action="environment.pause").count() == 1
    screenshot(page, "environment-paused")

    page.fill("#resume-note", "database back")
    page.click("#resume-button")
    expect(page.locator("#env-banner")).to_have_count(0)
    expect(page.locator("#deploy-button")).to_be_enabled()
    assert AuditEvent.objects.filter(action="environment.resume").count() == 1


@pytest.mark.usefixtures("github")
def test_deploy_form_asks_production_to_confirm_environment_ref_and_runner(
    live_server: Any, sre: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    primary, _, _ = production()
    oncall.kill(primary)
    page = new_page(browser)
    sign_in(page, live_server.url, sre, "/deploys/new/")
    expect(page.locator("#preview-choose")).to_be_visible()

    page.select_option("select[name=environment]", "production")
    expect(page.locator("#runner-preview [data-chosen]")).to_have_text(
        "prod-secondary-1"
    )
    expect(page.locator("#id_ref")).to_have_attribute("placeholder", "main")
    expect(page.locator("#id_ref")).to_have_value("")
    page.fill("#id_change_ticket", "CHG-7")
    page.click("#deploy-submit")
    # Back from the confirmation keeps what was typed.
    page.click("#confirm-back")
    expect(page.locator("select[name=environment]")).to_have_value("production")
    expect(page.locator("#id_change_ticket")).to_have_value("CHG-7")
    page.click("#deploy-submit")

    confirm = page.locator("#deploy-confirm")
    expect(confirm).to_contain_text("production")
    expect(page.locator("#confirm-ref")).to_contain_text("main")
    expect(page.locator("#confirm-runner")).to_contain_text("prod-secondary-1")
    expect(page.locator("#confirm-deploy")).to_have_text("Deploy main to production")
    assert not DeployRun.objects.filter(state=DeployRun.State.QUEUED).exists()
    screenshot(page, "deploy-confirm")

    page.click("#confirm-deploy")
    page.wait_for_url("**/deploys/*/")
    run = DeployRun.objects.latest("pk")
    assert (run.ref, run.environment.name, run.requester_name) == (
        "main",
        "production",
        "sam-sre",
    )
    assert run.change_ticket == "CHG-7"
    expect(page.locator("#run-headline")).to_be_visible()


@pytest.mark.parametrize("javascript", [False])
def test_unknown_environment_link_is_a_visible_error(
    live_server: Any, sre: User, browser: Any, javascript: bool
) -> None:
    from playwright.sync_api import expect

    production()
    page = new_page(browser, javascript=javascript)
    sign_in(page, live_server.url, sre, "/deploys/new/")
    page.goto(f"{live_server.url}/deploys/new/?environment=prod")
    expect(page.locator("#unknown-environment")).to_contain_text(
        "There is no environment named “prod”"
    )
    expect(page.locator("select[name=environment]")).to_be_visible()
