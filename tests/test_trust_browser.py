"""Headless Chromium: an SRE trusts a runner from its page, the badge shows on the
runner page, the fleet and the environment's pool, and the SRE ends it early."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.models import AuditEvent
from runners.models import Flag, Reason, Runner, State
from tests.browsing import screenshot
from tests.conftest import PASSWORD
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

NAME = "prod-primary"


def test_sre_trusts_a_runner_and_every_page_shows_it(
    live_server: Any,
    sre: User,
    page: Any,
) -> None:
    from playwright.sync_api import expect

    primary = Runner.objects.create(
        name=NAME,
        state=State.DEGRADED,
        reason=Reason.EXPORTER_UNREACHABLE,
        github_status="online",
        observed_flags=int(Flag.GITHUB_ONLINE | Flag.EXPORTER_UNREACHABLE),
    )
    make_env("production", primary, pool_runner("prod-secondary"))
    # Staging lets an unreachable exporter pass, but no heartbeat comes either.
    make_env("staging", pool_runner("staging-1"), primary, exporter_policy="advisory")
    page.goto(f"{live_server.url}/accounts/login/?next=/fleet/{NAME}/")
    page.fill("input[name=username]", sre.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/fleet/{NAME}/")
    expect(page.locator("#eligibility")).to_contain_text(
        "not eligible: degraded (exporter unreachable)"
    )
    expect(page.locator('#eligibility [data-environment="staging"]')).to_contain_text(
        "not eligible: unknown (only GitHub reports it)"
    )
    screenshot(page, "runner-eligibility-strict")
    card = page.locator("#trust")

    # An empty reason is refused on the page, saying what is missing.
    card.locator("select[name=hours]").select_option("2")
    card.locator("button[type=submit]").click()
    expect(page.locator("#trust input[name=reason]:invalid")).to_have_count(1)

    card.locator("input[name=reason]").fill("exporter behind the firewall, INC-7")
    card.locator("button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/fleet/{NAME}/")
    badge = f'[data-trusted="{NAME}"]'
    text = f"trusted by {sre.username} until "
    expect(page.locator(f"h1 {badge}")).to_contain_text(text)
    expect(page.locator(f"h1 {badge}")).to_contain_text(
        ": exporter behind the firewall, INC-7"
    )
    expect(page.locator("#environment-eligibility")).to_contain_text(
        "production (GitHub status required, heartbeat required, exporter required, "
        "canary required)"
        ": eligible"
    )
    expect(page.locator('#eligibility [data-environment="staging"]')).to_contain_text(
        "unknown (only GitHub reports it): overridden, trusted by "
    )
    screenshot(page, "runner-eligibility-trusted")

    for url, scope in (
        ("/fleet/", f'tr[data-runner="{NAME}"]'),
        ("/deploys/environments/production/", f'[data-pool-runner="{NAME}"]'),
    ):
        page.goto(f"{live_server.url}{url}")
        expect(page.locator(f"{scope} {badge}")).to_contain_text(text)
    expect(page.locator(f'[data-pool-runner="{NAME}"]')).to_contain_text(
        "next deploy goes here"
    )

    page.goto(f"{live_server.url}/fleet/{NAME}/")
    page.locator("#trust button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/fleet/{NAME}/")
    expect(page.locator(badge)).to_have_count(0)
    expect(page.locator("#trust")).to_contain_text("Not trusted")
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions[-2:] == ["runner.trust", "runner.untrust"]
