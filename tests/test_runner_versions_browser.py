"""An SRE finds outdated runners and a pool runner missing its name label in a real
browser: the fleet's version filter, the row badges and the runner page's card
(1366x900 screenshots under ``var/screenshots/``)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth.models import User

from runners.models import Runner
from tests.browsing import screenshot
from tests.conftest import PASSWORD
from tests.factories import make_env
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]


def test_an_sre_filters_outdated_runners_and_reads_why(
    live_server: Any, viewer: User, page: Any
) -> None:
    from playwright.sync_api import expect

    common = {"state": "healthy", "reason": "", "github_id": None}
    current = Runner.objects.create(
        name="prod-1",
        runner_version="2.330.0",
        runner_version_source="github",
        labels=["self-hosted", "prod-1"],
        **common,
    )
    old = Runner.objects.create(
        name="prod-2",
        runner_version="2.300.0",
        runner_version_source="github",
        version_outdated="below_minimum",
        version_note="2.300.0 is below the minimum 2.320.0",
        labels=["self-hosted", "prod-2"],
        **common,
    )
    unlabelled = Runner.objects.create(
        name="prod-3",
        runner_version="2.330.0",
        runner_version_source="heartbeat",
        missing_name_label=True,
        labels=["self-hosted", "deploy"],
        **{**common, "github_id": 3},
    )
    make_env("production", current, old, unlabelled)

    page.goto(f"{live_server.url}/accounts/login/?next=/fleet/")
    page.fill("input[name=username]", viewer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/fleet/")
    expect(
        page.locator('tr[data-runner="prod-2"] [data-flag="version_outdated"]')
    ).to_be_visible()
    expect(
        page.locator('tr[data-runner="prod-3"] [data-flag="missing_name_label"]')
    ).to_be_visible()
    screenshot(page, "fleet-versions", full_page=True)

    page.select_option("select[name=version_outdated]", "true")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr[data-runner]")).to_have_count(1)
    expect(page.locator('tr[data-runner="prod-2"]')).to_be_visible()

    page.fill("input[name=version]", "2.330.0")
    page.select_option("select[name=version_outdated]", "")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr[data-runner]")).to_have_count(2)

    page.goto(f"{live_server.url}/fleet/prod-2/")
    expect(page.locator("#eligibility")).to_contain_text(
        "runner version outdated: 2.300.0 is below the minimum 2.320.0"
    )
    expect(page.locator("#version-note")).to_contain_text("GitHub refuses jobs to it")
    screenshot(page, "runner-version-outdated", full_page=True)

    page.goto(f"{live_server.url}/fleet/prod-3/")
    expect(page.locator("#name-label")).to_contain_text("missing its name label prod-3")
    screenshot(page, "runner-missing-name-label", full_page=True)
