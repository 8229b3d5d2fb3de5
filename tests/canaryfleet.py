"""The canary tests' fleet: production's pool on both sides of the GitHub simulator,
the shipped canary workflow, webhooks forwarded to the real receiver, one clock."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.test import Client

from deploys import jobs
from deploys.models import WebhookDelivery
from diagnostics import canary
from diagnostics.models import HostRun
from githubsim import Simulator
from runners import health
from runners.models import Runner
from tests.clients import sign
from tests.conftest import ROOT
from tests.factories import make_env, pool_runner
from tests.simhttp import Captured

SECRET = "canary-webhook-secret"  # noqa: S105
WORKFLOW = ROOT / "diagnostics/workflows/runner-canary.yml"
NAMES = ("prod-1", "prod-2")
DISPATCH = "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
CANCEL = "POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel"


def configure(settings: Any) -> None:
    """Short canary timeouts, so a test moves the clocks by minutes at most."""
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    settings.CANARY_PICKUP_TIMEOUT = 120
    settings.CANARY_JOB_TIMEOUT = 120
    settings.CANARY_WEBHOOK_GRACE = 60
    settings.DIAGNOSTICS_POLL_INTERVAL = 5


class Fleet:
    """Production's pool on both sides, the shipped canary workflow (a 10 s job),
    webhooks forwarded to the real receiver, and one clock for both."""

    def __init__(self, sim: Simulator) -> None:
        self.hook = Captured()
        sim.set_webhook(self.hook.url, SECRET)
        self.sim = sim
        # The simulator's clock (it started a moment before this test's "now").
        self.now = datetime.fromtimestamp(sim.clock.now(), UTC)
        self.forwarded = 0
        flow = sim.set_workflow("runner-canary.yml", yaml=WORKFLOW.read_text())
        self.spec = flow.jobs[0]
        self.spec.duration = 10
        runners = []
        for name in NAMES:
            sim.add_runner(name, ["production"])
            runners.append(pool_runner(name))
        self.env = make_env("production", *runners)
        self.signals()

    def runner(self, name: str = NAMES[0]) -> Runner:
        return Runner.objects.get(name=name)

    def signals(self) -> None:
        """Fresh heartbeats and GitHub readings, as the agents and the sync give."""
        Runner.objects.update(
            github_status="online",
            github_seen_at=self.now,
            last_heartbeat_at=self.now,
            heartbeat_deadline=self.now + timedelta(minutes=5),
        )

    def step(self, seconds: float) -> datetime:
        """Move both clocks, let the simulator act, deliver its webhooks, then let
        the diagnostics watch look at the canaries due."""
        self.sim.clock.advance(seconds)
        self.sim.state.tick()
        self.now += timedelta(seconds=seconds)
        self.deliver()
        canary.watch_due(self.now)
        self.deliver()
        return self.now

    def run_for(self, seconds: float, tick: float = 5) -> None:
        for _ in range(int(seconds / tick)):
            self.step(tick)

    def deliver(self) -> None:
        self.sim.webhooks.wait_idle()
        events = self.hook.events()
        for event, payload, _headers, _body in events[self.forwarded :]:
            if event == "ping":
                continue
            body = json.dumps(payload).encode()
            answer = Client().post(
                "/github/webhook",
                body,
                content_type="application/json",
                headers={
                    "X-GitHub-Event": event,
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": sign(body, SECRET),
                },
            )
            assert answer.status_code == 202, answer.content
            jobs.process_delivery(WebhookDelivery.objects.latest("pk").pk)
        self.forwarded = len(events)

    def sweep(self, times: int) -> None:
        for _ in range(times):
            self.signals()
            health.sweep(self.now)

    def requests(self, route: str) -> int:
        counts = requests.get(f"{self.sim.url}/_sim/requests", timeout=5).json()
        return int(counts.get(route, 0))

    def close(self) -> None:
        self.hook.close()


def canary_of(name: str) -> HostRun:
    return HostRun.objects.filter(runner__name=name, kind=HostRun.Kind.CANARY).latest(
        "requested_at", "pk"
    )
