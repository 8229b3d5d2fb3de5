"""Every main page works in a real browser under the Content-Security-Policy: the
header is sent, and Chromium reports no violation and no console error."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from deploys.models import DeployRun, Environment
from rotations.models import SecretRotationSchedule
from runners.models import Runner, RunnerEvent, State
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


def make_objects() -> dict[str, str]:
    """One of everything the pages draw, including the server-sized parts (the
    runner's health timeline, the secrets' due-date markers)."""
    now = timezone.now()
    runner = Runner.objects.create(name="linux-prod-1", state=State.HEALTHY)
    RunnerEvent.objects.create(
        runner=runner,
        kind=RunnerEvent.Kind.STATE_CHANGE,
        from_state=State.UNKNOWN,
        to_state=State.HEALTHY,
        created_at=now - timedelta(hours=3),
    )
    env = Environment.objects.create(name="production", repository="acme/deploy")
    env.set_pool([runner])
    run = DeployRun.objects.create(
        environment=env, ref="main", requester_name="ada-admin"
    )
    schedule = SecretRotationSchedule.objects.create(
        name="DEPLOY_KEY", last_rotated_at=now - timedelta(days=80), present=True
    )
    return {
        "runner": runner.name,
        "env": env.name,
        "run": str(run.pk),
        "secret": str(schedule.pk),
    }


def test_main_pages_load_under_the_policy_without_violations(
    live_server: Any, admin_user: User, page: Any
) -> None:
    ids = make_objects()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", admin_user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    paths = [
        "/",
        "/fleet/",
        f"/fleet/{ids['runner']}/",
        "/retention/",
        "/deploys/",
        "/deploys/new/",
        f"/deploys/{ids['run']}/",
        "/deploys/environments/",
        f"/deploys/environments/{ids['env']}/",
        "/secrets/",
        f"/secrets/{ids['secret']}/",
        "/runbooks/",
        "/audit/",
        "/accounts/password_change/",
        "/admin/",
        "/api/docs/",
    ]
    headers: dict[str, str] = {}
    violations: dict[str, list[str]] = {}
    for path in paths:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        headers[path] = response.headers.get("content-security-policy", "")
        if path == "/api/docs/":
            page.wait_for_selector("text=/api/v1/audit-events/")
        page.wait_for_load_state("networkidle")
        violations[path] = page.evaluate("window.cspViolations")

    assert all("default-src 'self'" in header for header in headers.values()), headers
    assert violations == {path: [] for path in paths}
    assert page.problems == []


def test_server_sized_parts_are_drawn_without_style_attributes(
    live_server: Any, admin_user: User, page: Any
) -> None:
    ids = make_objects()
    page.goto(f"{live_server.url}/accounts/login/?next=/fleet/{ids['runner']}/")
    page.fill("input[name=username]", admin_user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/fleet/{ids['runner']}/")

    segment = page.locator("[data-flex]").first
    grow = segment.evaluate("el => getComputedStyle(el).flexGrow")
    page.goto(f"{live_server.url}/secrets/")
    # The due-date chart is SVG laid out on the server: positions are attributes.
    marker = page.locator("#due-chart a.mark circle").first
    x = marker.evaluate("el => el.getBoundingClientRect().x")
    axis = page.locator("#due-chart line.axis").evaluate(
        "el => el.getBoundingClientRect().x"
    )

    assert float(grow) > 0
    assert x > axis
    assert page.evaluate("window.cspViolations") == []


def test_a_locked_out_sign_in_shows_when_to_try_again(
    live_server: Any, viewer: User, page: Any
) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    for _ in range(6):
        page.fill("input[name=username]", viewer.username)
        page.fill("input[name=password]", "wrong-password")
        page.click("button[type=submit]")
        page.wait_for_load_state()

    message = page.locator("[data-lockout]").inner_text()
    assert "Too many failed sign-ins for this account or address" in message
    assert "try again in 15 minutes" in message
    # The refusal's own 429 is the only failed response.
    assert page.problems == [f"429 {live_server.url}/accounts/login/"]
