"""Headless Chromium runs diagnostics the way an SRE does: the runner page's button,
the run in flight, the report the simulated job's real script sent back, its
history, and the full report page with the redacted _diag log."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from diagnostics import domain
from diagnostics.models import HostRun
from githubsim import Simulator
from tests.browsing import SCREENSHOTS
from tests.conftest import PASSWORD
from tests.factories import runner_with_token
from tests.hostroot import leaked, make_host_root, simulate_diagnostics_workflow
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.sim(connect=True, pickup_delay=0.1),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]

NAME = "prod-primary-1"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_sre_runs_diagnostics_from_the_runner_page(
    live_server: Any,
    sim: Simulator,
    sre: User,
    page: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    _, token = runner_with_token(NAME, github_status="online")
    sim.add_runner(NAME, ["self-hosted", "linux"])
    sim.set_heartbeat_token(NAME, token)
    make_host_root(tmp_path / "hosts" / NAME, NAME)
    simulate_diagnostics_workflow(sim, live_server.url, tmp_path / "hosts")

    page.goto(f"{live_server.url}/accounts/login/?next=/fleet/{NAME}/")
    page.fill("input[name=username]", sre.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/fleet/{NAME}/")
    expect(page.locator("#no-diagnostics")).to_be_visible()
    expect(page.locator("#install-agent")).to_be_visible()  # no heartbeat yet

    page.click("#run-diagnostics")

    page.wait_for_url(f"{live_server.url}/fleet/{NAME}/")
    expect(page.locator("#diagnostics-in-flight")).to_contain_text(
        "Diagnostics dispatching"
    )
    page.evaluate("window.loadedOnce = true")
    run = HostRun.objects.get()
    # The worker's part, done here: dispatch; the simulated job does the rest.
    domain.dispatch(run.pk)
    assert wait_for(lambda: HostRun.objects.get().finished_at is not None)

    # htmx polls the panel while the run is in flight: the result, no reload.
    facts = page.locator("#diagnostics-facts")
    expect(facts).to_contain_text("prometheus", timeout=15_000)
    assert page.evaluate("window.loadedOnce") is True
    expect(facts).to_contain_text("unreachable")
    expect(facts).to_contain_text("2.330.0")
    expect(page.locator("#diagnostics-history tbody tr")).to_have_count(1)
    expect(page.locator("#diagnostics-history tbody tr")).to_have_attribute(
        "data-state", "succeeded"
    )
    expect(page.locator("#run-diagnostics")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#diagnostics").screenshot(
        path=str(SCREENSHOTS / "runner-diagnostics.png")
    )

    page.click("text=full report")
    expect(page.locator("h1")).to_contain_text(f"Diagnostics on {NAME}")
    log = page.locator("pre.diag-tail").first
    expect(log).to_contain_text("Connection to broker lost")
    expect(log).to_contain_text("[REDACTED]")
    assert leaked(page.content()) == []
