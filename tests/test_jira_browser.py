"""Headless Chromium requests deploys with JIRA change tickets through the form,
against the GitHub simulator and a fake JIRA: a closed ticket is refused on the
form naming its status, an approved one deploys, and the deploy page links the
ticket and shows its outcome comment retrying while JIRA fails, then commented.
Screenshots go to ``var/screenshots/jira-*.png``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from deploys import ticket_outbox
from deploys.models import DeployRun
from githubsim import Simulator
from tests.browsing import screenshot
from tests.conftest import PASSWORD
from tests.deploying import Clock, drive, final, simulated_env
from tests.fakejira import FakeJira, connected
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
    pytest.mark.sim(
        time_scale=600, seed=7, pickup_delay=5, job_duration=20, connect=True
    ),
]


@pytest.fixture
def jira(settings: Any) -> Iterator[FakeJira]:
    with connected(settings) as fake:
        settings.NOTIFY_SCAN_GRACE = 0
        settings.JIRA_TRANSITION_ON_SUCCESS = "Deployed"
        yield fake


def submit(page: Any, ticket: str) -> None:
    page.select_option("select[name=environment]", "production")
    page.fill("input[name=ref]", "main")
    page.fill("input[name=change_ticket]", ticket)
    page.click("form[aria-label=Deploy] button[type=submit]")


def test_a_closed_ticket_is_refused_and_an_approved_one_is_linked_and_updated(
    live_server: Any, sim: Simulator, sre: User, page: Any, jira: FakeJira
) -> None:
    from playwright.sync_api import expect

    simulated_env(sim)
    jira.add_issue("INFRA-9", "Closed")
    jira.add_issue("INFRA-473", "Approved", Deployed="Done")
    base = live_server.url
    page.goto(f"{base}/accounts/login/?next=/deploys/new/")
    page.fill("input[name=username]", sre.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/deploys/new/")

    submit(page, "INFRA-9")
    expect(page.locator("form[aria-label=Deploy]")).to_contain_text(
        "change ticket INFRA-9 is Closed; a deploy to production needs it in "
        "Approved or In Progress"
    )
    screenshot(page, "jira-refused", full_page=True)
    assert not DeployRun.objects.exists()

    submit(page, "INFRA-473")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/deploys/\d+/$"))
    deploy_page = page.url
    # The deploy page polls; on the embedded SQLite its reads would lock the
    # tables the engine writes here, so the browser waits elsewhere meanwhile.
    page.goto("about:blank")
    run = drive(DeployRun.objects.get(), final, Clock())
    assert run.state == DeployRun.State.SUCCEEDED
    jira.fail_next(1, 502)
    start = timezone.now() + timedelta(seconds=1)
    ticket_outbox.process(start)
    page.goto(deploy_page)
    link = page.locator("#change-ticket-link")
    expect(link).to_have_attribute("href", f"{jira.url}/browse/INFRA-473")
    expect(page.locator("#change-ticket-update")).to_contain_text(
        "outcome comment retrying attempt 1 failed: JIRA answered HTTP 502 about "
        "INFRA-473"
    )
    screenshot(page, "jira-retrying", full_page=True)

    page.goto("about:blank")
    ticket_outbox.send_due(start + timedelta(minutes=5))
    page.goto(deploy_page)
    expect(page.locator("#change-ticket-update")).to_contain_text("outcome commented")
    expect(page.locator("#change-ticket-update")).to_contain_text(
        "moved through “Deployed”"
    )
    screenshot(page, "jira-commented", full_page=True)
    assert jira.issues["INFRA-473"].status == "Done"
    assert f"/deploys/{run.pk}/" in jira.comments("INFRA-473")[0]
