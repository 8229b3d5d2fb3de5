"""Headless Chromium on the on-call pages: the status board (live, nothing
overflowing), the connection-lost banner when the server stops and its clearing
when it comes back, the runner page's zoom without JavaScript and its facts, the
secrets chart, and an admin edit showing in the audit log. Each test saves a
1366×900 screenshot under ``var/screenshots/``."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.liveness import watched_jobs
from controlplane.models import AuditEvent, TaskStatus
from deploys.models import DeployAttempt, DeployRun, Environment
from rotations.models import SecretRotationSchedule
from runners.models import Reason, Runner, RunnerEvent, State
from tests.browsing import new_page, screenshot, sign_in
from tests.factories import make_env, make_schedule, pool_runner
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]

# The htmx polling interval of the live pages (hx-trigger="every 5s").
REFRESH_SECONDS = 5


def overflowing(page: Any, selector: str) -> list[str]:
    """The elements matching ``selector`` whose content is wider than they are."""
    found: list[str] = page.eval_on_selector_all(
        selector,
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
        ".map(e => e.id || e.className || e.tagName)",
    )
    return found


# A server that can stop and start again ----------------------------------------------


class Switch:
    """A TCP forwarder in front of the live server: ``stop()`` closes the port and
    every open connection, as a stopped server would; ``start()`` listens on the
    same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener: socket.socket | None = None
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self.listener is not None:
            # shutdown() first: close() alone leaves a thread blocked in accept()
            # holding the port open.
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass


@pytest.fixture
def switch(live_server: Any) -> Iterator[Switch]:
    host, port = live_server.url.removeprefix("http://").split(":")
    forwarder = Switch((host, int(port)))
    forwarder.start()
    yield forwarder
    forwarder.stop()


# Scenes ------------------------------------------------------------------------------


def all_tasks_fresh() -> None:
    for task in (*(job.name for job in watched_jobs()), "runner_sync"):
        TaskStatus.objects.record(task, ok=True, duration=0.1)


def failover_scene() -> tuple[Runner, Runner, Environment]:
    """The demo's story: prod-primary-1 died mid-deploy, the deploy failed over to
    prod-secondary-1 and succeeded; staging is frozen; a secret is overdue."""
    now = timezone.now()
    fresh: dict[str, Any] = {
        "heartbeat_deadline": now + timedelta(seconds=30),
        "last_heartbeat_at": now - timedelta(seconds=2),
        "github_status": "online",
        "github_seen_at": now,
    }
    primary = pool_runner("prod-primary-1", **fresh)
    secondary = pool_runner("prod-secondary-1", **fresh)
    staging_runner = pool_runner("staging-1", **fresh)
    for n in range(1, 9):
        pool_runner(f"ci-{n}", **fresh)
    prod = make_env("production", primary, secondary)
    make_env("staging", staging_runner)
    run = DeployRun.objects.create(
        environment=prod,
        ref="main",
        requester_name="sam-sre",
        state=DeployRun.State.SUCCEEDED,
        created_at=now - timedelta(minutes=4),
        finished_at=now - timedelta(minutes=1),
    )
    DeployAttempt.objects.create(
        run=run,
        number=1,
        runner=primary,
        state=DeployAttempt.State.CANCELLED,
        failover_reason=DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
        finished_at=now - timedelta(minutes=3),
    )
    DeployAttempt.objects.create(
        run=run,
        number=2,
        runner=secondary,
        state=DeployAttempt.State.SUCCEEDED,
        finished_at=now - timedelta(minutes=1),
    )
    for days, name in (
        (200, "PROD_DB_PASSWORD"),
        (80, "DEPLOY_KEY"),
        (80, "NPM_TOKEN"),
    ):
        make_schedule(
            name,
            scope=SecretRotationSchedule.Scope.ENVIRONMENT,
            environment=prod,
            last_rotated_at=now - timedelta(days=days),
            last_checked_at=now,
            present=True,
        )
    all_tasks_fresh()
    return primary, secondary, prod


def kill(runner: Runner) -> None:
    """What the sweep writes when the host's heartbeats stop."""
    now = timezone.now()
    Runner.objects.filter(pk=runner.pk).update(
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        state_since=now,
        heartbeat_deadline=now - timedelta(seconds=5),
        last_heartbeat_at=now - timedelta(seconds=35),
    )
    RunnerEvent.objects.create(
        runner=runner,
        kind=RunnerEvent.Kind.STATE_CHANGE,
        from_state=State.HEALTHY,
        to_state=State.UNHEALTHY,
        message="heartbeat stale",
    )


# Tests -------------------------------------------------------------------------------


def test_home_board_shows_the_killed_runner_live_and_nothing_overflows(
    live_server: Any, viewer: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    primary, _, _ = failover_scene()
    page = new_page(browser)
    sign_in(page, live_server.url, viewer, "/")
    expect(page.locator("#open-alerts h2")).to_contain_text("open alert")
    page.evaluate("window.loadedOnce = true")

    kill(primary)

    # The board refreshes itself: the dead runner appears, named and linked, with
    # the rule that would page for it and its runbook; no reload.
    named = page.locator('#board-runners li[data-runner="prod-primary-1"]')
    expect(named).to_be_visible(timeout=(REFRESH_SECONDS + 3) * 1000)
    assert page.evaluate("window.loadedOnce") is True
    expect(named.locator("a").first).to_have_attribute("href", "/fleet/prod-primary-1/")
    alert = page.locator('#open-alerts li[data-rule="RunnerHeartbeatStale"]')
    expect(alert.locator("a.runbook")).to_have_attribute(
        "href", "/runbooks/runner-heartbeat-stale/"
    )
    expect(
        page.locator('#open-alerts li[data-rule="DeployFailedOver"]')
    ).to_be_visible()
    row = page.locator('#board-environments tr[data-environment="production"]')
    expect(row).to_contain_text("after failover")
    expect(row).to_contain_text("prod-secondary-1")
    assert "0 minutes" not in page.content()
    nav = page.locator("nav[aria-label=Sections]")
    expect(nav.get_by_role("link", name="Environments")).to_be_visible()
    assert nav.get_by_role("link", name="Admin").count() == 0
    assert overflowing(page, ".board > .card, .board table, #open-alerts") == []
    screenshot(page, "home")


def test_connection_lost_banner_appears_and_clears_with_the_server(
    live_server: Any, switch: Switch, viewer: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    failover_scene()
    base = f"http://127.0.0.1:{switch.port}"
    page = new_page(browser)
    sign_in(page, base, viewer, "/fleet/")
    banner = page.locator("#connection-lost")
    expect(banner).to_be_hidden()

    switch.stop()
    # Within one refresh interval (plus a second for the browser to notice).
    expect(banner).to_be_visible(timeout=(REFRESH_SECONDS + 1) * 1000)
    expect(banner).to_contain_text("connection lost · last updated")
    first = int(banner.locator("[data-connection-age]").inner_text())
    page.wait_for_timeout(2_100)
    assert int(banner.locator("[data-connection-age]").inner_text()) >= first + 2
    screenshot(page, "fleet-connection-lost")

    switch.start()
    expect(banner).to_be_hidden(timeout=(REFRESH_SECONDS + 1) * 1000)
    expect(page.locator('tr[data-runner="prod-primary-1"]')).to_be_visible()
    screenshot(page, "fleet")


def test_runner_page_zooms_without_javascript_and_shows_facts_whole(
    live_server: Any, viewer: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    primary, _, _ = failover_scene()
    Runner.objects.filter(pk=primary.pk).update(
        created=timezone.now() - timedelta(minutes=20),
        facts={
            "runner_version": "2.321.0",
            "disk_free_bytes": 60 * 10**9,
            "disk_total_bytes": 100 * 10**9,
            "load1": 0.52,
            "cpus": 4,
            "uptime_seconds": 93_784,
        },
        exporter_detail={"disk_free_percent": 61.5, "load_per_cpu": 0.13},
    )
    kill(primary)
    for _ in range(12):  # a demo restarting, issuing a token each time
        primary.issue_heartbeat_token("demo")

    page = new_page(browser, javascript=False)
    sign_in(page, live_server.url, viewer, "/fleet/prod-primary-1/")
    page.get_by_role("link", name="1h", exact=True).click()
    page.wait_for_url("**/fleet/prod-primary-1/?window=1h#health")
    expect(page.locator("#uptime-summary")).to_contain_text("of the 20 min observed")
    expect(page.locator('.zoom a[aria-current="true"]')).to_have_text("1h")
    expect(page.locator("#facts")).to_contain_text("60.0 GB of 100 GB (60 %)")
    assert overflowing(page, "#facts dd, #facts dt, .cards .card") == []
    # Twelve token rotations are one line of the event list.
    expect(page.locator("#events li")).to_have_count(2)
    expect(page.locator("#events")).to_contain_text("×12 since")

    js_page = new_page(browser)
    sign_in(js_page, live_server.url, viewer, "/fleet/prod-primary-1/?window=6h")
    screenshot(js_page, "runner")


def test_secrets_chart_stacks_same_day_secrets_and_keeps_overdue_inside(
    live_server: Any, viewer: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    failover_scene()
    page = new_page(browser)
    sign_in(page, live_server.url, viewer, "/secrets/")

    chart = page.locator("#due-chart").bounding_box()
    boxes = {
        name: page.locator(f'#due-chart a[data-secret="{name}"] text').bounding_box()
        for name in ("PROD_DB_PASSWORD", "DEPLOY_KEY", "NPM_TOKEN")
    }
    overdue = boxes["PROD_DB_PASSWORD"]
    assert chart["x"] <= overdue["x"] and (
        overdue["x"] + overdue["width"] <= chart["x"] + chart["width"]
    )
    assert chart["y"] <= overdue["y"] <= chart["y"] + chart["height"]
    deploy, npm = boxes["DEPLOY_KEY"], boxes["NPM_TOKEN"]
    # Due the same day: stacked, not drawn over each other.
    assert abs(deploy["y"] - npm["y"]) >= deploy["height"]
    hover = page.locator('#due-chart a[data-secret="PROD_DB_PASSWORD"] title')
    assert "overdue by" in hover.text_content()
    expect(page.locator("#timeline tbody tr")).to_have_count(3)
    screenshot(page, "secrets")


def test_an_admin_edit_appears_in_the_audit_log(
    live_server: Any, admin_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    _, _, prod = failover_scene()
    page = new_page(browser)
    sign_in(
        page,
        live_server.url,
        admin_user,
        f"/admin/deploys/environment/{prod.pk}/change/",
    )
    expect(page.get_by_text("Gate timeout (seconds)")).to_be_visible()
    page.fill("textarea[name=required_secrets]", "DEPLOY_KEY\nPROD_DB_PASSWORD")
    page.fill("input[name=gate_timeout]", "600")
    page.click("input[name=_save]")
    page.wait_for_url(f"{live_server.url}/admin/deploys/environment/")

    page.goto(f"{live_server.url}/audit/")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("environment.update")
    expect(row).to_contain_text("gate_timeout")
    expect(row.locator("a.target")).to_have_attribute(
        "href", "/deploys/environments/production/"
    )
    # The time stays on one line.
    cell = row.locator("td").first
    assert cell.evaluate("e => e.getClientRects().length") == 1
    height = cell.locator("time").evaluate("e => e.getBoundingClientRect().height")
    assert height < 30
    event = AuditEvent.objects.get(action="environment.update")
    assert event.detail["via"] == "admin"
    assert Environment.objects.get(pk=prod.pk).required_secrets == [
        "DEPLOY_KEY",
        "PROD_DB_PASSWORD",
    ]
    nav = page.locator("nav[aria-label=Sections]")
    expect(nav.get_by_role("link", name="Admin")).to_be_visible()
    screenshot(page, "audit")
