"""The canary job per pool runner, through the GitHub simulator: the shipped workflow
pinned to the runner by its name label, tracked from the ``workflow_job`` webhooks
with one dispatch call each; a canary not picked up or failing turns the runner
degraded (``canary_failed``), a passing one clears it; busy, offline and deploying
runners are skipped; the environment's canary policy decides what a failure costs;
intervals stretch to fit the API budget."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.models import GitHubPurposeUsage
from deploys.models import DeployRun, Environment
from diagnostics import canary
from diagnostics.models import HostRun
from githubsim import Simulator
from runners.models import Reason, Runner, State
from tests.canaryfleet import CANCEL, DISPATCH, NAMES, Fleet, canary_of, configure
from tests.factories import make_env, pool_runner

pytestmark = [
    pytest.mark.django_db,
    # The simulator's clock moves only when a test moves it.
    pytest.mark.sim(time_scale=1e-9, pickup_delay=5, connect=True, max_retries=1),
]


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    configure(settings)


@pytest.fixture
def fleet(sim: Simulator) -> Iterator[Fleet]:
    fleet = Fleet(sim)
    yield fleet
    fleet.close()


def test_a_canary_passes_with_one_call_measuring_pickup_and_duration(
    fleet: Fleet, settings: Any
) -> None:
    requested = canary.schedule_due(fleet.now)
    assert sorted(run.runner.name for run in requested) == list(NAMES)
    fleet.run_for(30)

    run = canary_of(NAMES[0])
    assert run.state == HostRun.State.SUCCEEDED, run.detail
    assert run.github_run_id is not None
    # Dispatched when scheduled, taken 5 s later (the simulator's pickup delay).
    assert run.pickup_seconds == pytest.approx(5, abs=1)
    assert run.job_seconds == pytest.approx(10, abs=1)
    # GitHub's times are whole seconds.
    assert run.detail in (
        "picked up after 4 s, ran 10 s",
        "picked up after 5 s, ran 10 s",
    )
    assert not fleet.runner().canary_failing
    # Webhook-first: one dispatch per canary and nothing else, counted as canary.
    assert fleet.requests(DISPATCH) == 2
    assert fleet.sim.state.request_count() == 2
    usage = {
        row["purpose"]: row["charged"] for row in GitHubPurposeUsage.objects.shares()
    }
    assert usage == {"canary": 2}


def test_a_canary_nobody_picks_up_degrades_the_runner_and_cancels_the_run(
    fleet: Fleet,
) -> None:
    fleet.sim.refuse_jobs(NAMES[0])  # online and idle for GitHub, takes no job
    canary.schedule_due(fleet.now)
    fleet.run_for(125)

    run = canary_of(NAMES[0])
    assert run.state == HostRun.State.TIMED_OUT
    assert run.started_at is None
    assert "not picked up within 120 s" in run.detail
    assert "the run was cancelled" in run.detail
    assert fleet.requests(CANCEL) == 1
    assert fleet.runner().canary_failing
    assert canary_of(NAMES[1]).state == HostRun.State.SUCCEEDED

    fleet.sweep(2)  # HEALTH_FALL_AFTER observations
    runner = fleet.runner()
    assert (runner.state, runner.reason) == (State.DEGRADED, Reason.CANARY_FAILED)
    assert fleet.runner(NAMES[1]).state == State.HEALTHY


def test_a_failing_canary_job_degrades_the_runner(fleet: Fleet) -> None:
    fleet.spec.outcome = "failure"
    canary.schedule_due(fleet.now)
    fleet.run_for(30)

    run = canary_of(NAMES[0])
    assert run.state == HostRun.State.FAILED
    assert run.started_at is not None
    assert "failed" in run.detail
    fleet.sweep(2)
    assert fleet.runner().reason == Reason.CANARY_FAILED
    assert fleet.runner().state == State.DEGRADED


def test_a_passing_canary_clears_the_reason(fleet: Fleet) -> None:
    Runner.objects.filter(name=NAMES[0]).update(canary_failing=True)
    fleet.sweep(2)
    assert fleet.runner().reason == Reason.CANARY_FAILED

    canary.schedule_due(fleet.now)
    fleet.run_for(30)
    assert canary_of(NAMES[0]).state == HostRun.State.SUCCEEDED
    fleet.sweep(3)  # HEALTH_RISE_AFTER observations
    runner = fleet.runner()
    assert (runner.state, runner.reason, runner.canary_failing) == (
        State.HEALTHY,
        "",
        False,
    )


def test_busy_and_offline_runners_get_no_canary(fleet: Fleet) -> None:
    # A CI job on prod-1: its workflow_job webhook marks the runner busy.
    fleet.sim.start_traffic(runners=[NAMES[0]], count=1)
    fleet.step(6)
    assert fleet.runner().github_busy
    Runner.objects.filter(name=NAMES[1]).update(github_status="offline")

    assert canary.schedule_due(fleet.now) == []
    assert fleet.requests(DISPATCH) == 0


def test_no_canary_while_the_environment_deploys(fleet: Fleet) -> None:
    run = DeployRun.objects.create(
        environment=fleet.env, ref="main", state=DeployRun.State.RUNNING
    )
    other = make_env("staging", pool_runner("staging-1", github_status="online"))
    fleet.signals()
    requested = canary.schedule_due(fleet.now)
    assert [r.runner.name for r in requested] == ["staging-1"]
    assert other.pk != run.environment_id

    DeployRun.objects.filter(pk=run.pk).update(state=DeployRun.State.SUCCEEDED)
    assert {r.runner.name for r in canary.schedule_due(fleet.now)} == set(NAMES)


def test_the_interval_is_the_environments_own(fleet: Fleet) -> None:
    canary.schedule_due(fleet.now)
    fleet.run_for(30)
    assert canary.schedule_due(fleet.now + timedelta(minutes=29)) == []
    later = canary.schedule_due(fleet.now + timedelta(minutes=31))
    assert {run.runner.name for run in later} == set(NAMES)
    Environment.objects.update(canary_interval_minutes=0)
    HostRun.objects.filter(finished_at__isnull=True).delete()
    assert canary.schedule_due(fleet.now + timedelta(hours=2)) == []


@pytest.mark.parametrize(
    ("policy", "eligible", "notes"),
    [
        ("required", False, []),
        ("advisory", True, ["canary job failed: advisory for production"]),
        ("ignored", True, []),
    ],
)
def test_the_canary_policy_decides_what_a_failure_costs(
    fleet: Fleet, policy: str, eligible: bool, notes: list[str]
) -> None:
    Runner.objects.filter(name=NAMES[0]).update(canary_failing=True)
    fleet.sweep(2)
    Environment.objects.update(canary_policy=policy)
    env = Environment.objects.get()
    verdict = env.judge(fleet.runner(), fleet.now)
    assert verdict.eligible is eligible
    assert verdict.notes == notes
    if not eligible:
        assert verdict.blocking == ["degraded (canary job failed)"]


def test_intervals_stretch_alike_when_the_pools_exceed_the_budget() -> None:
    # 150 runners every 30 min: 300 calls an hour.
    assert canary.stretch([1800.0] * 150, 300) == 1.0
    assert canary.stretch([1800.0] * 300, 300) == 2.0
    # A pool asking twice as often keeps twice the pace.
    assert canary.stretch([900.0, 1800.0], 6) == 1.0
    assert canary.stretch([900.0, 1800.0], 3) == 2.0
    assert canary.stretch([], 0) == 1.0


def test_a_fleet_over_the_budget_gets_canaries_less_often(
    fleet: Fleet, settings: Any
) -> None:
    # 5,000 calls an hour (GitHub's token limit): 0.08 % is 4 calls, the two pool
    # runners every 30 min want 4: they fit; at 0.04 % each waits an hour.
    settings.CANARY_BUDGET_SHARE = 0.0008
    canary.schedule_due(fleet.now)
    fleet.run_for(30)
    assert len(canary.schedule_due(fleet.now + timedelta(minutes=31))) == 2
    HostRun.objects.filter(finished_at__isnull=True).delete()
    settings.CANARY_BUDGET_SHARE = 0.0004
    assert canary.schedule_due(fleet.now + timedelta(minutes=45)) == []
    assert len(canary.schedule_due(fleet.now + timedelta(minutes=61))) == 2


def test_dispatches_are_spread_over_the_interval(sim: Simulator) -> None:
    now = timezone.now()
    runners = [
        pool_runner(f"r-{n:02}", github_status="online", github_seen_at=now)
        for n in range(60)
    ]
    make_env("production", *runners)
    # 60 runners every 30 min: two per minute, and one more to catch up.
    assert len(canary.schedule_due(now)) == 3
    assert len(canary.schedule_due(now + timedelta(minutes=1))) == 3


def test_metrics_and_the_runner_page_show_each_runners_canaries(
    fleet: Fleet, sre_client: Client
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    fleet.sim.refuse_jobs(NAMES[1])
    canary.schedule_due(fleet.now)
    fleet.run_for(125)

    answer = Client().get("/metrics")
    assert answer.status_code == 200
    samples = {
        (sample.name, sample.labels.get("runner"), sample.labels.get("le")): (
            sample.value
        )
        for family in text_string_to_metric_families(answer.content.decode())
        for sample in family.samples
        if "canary" in sample.name
    }
    last = "controlplane_runner_canary_last_result"
    assert samples[(last, NAMES[0], None)] == 1
    assert samples[(last, NAMES[1], None)] == 0
    pickup = "controlplane_runner_canary_pickup_seconds"
    assert samples[(pickup + "_count", NAMES[0], None)] == 1
    assert samples[(pickup + "_bucket", NAMES[0], "2.0")] == 0
    assert samples[(pickup + "_bucket", NAMES[0], "5.0")] == 1
    # The runner that never took its job has no pickup to measure.
    assert (pickup + "_count", NAMES[1], None) not in samples

    page = sre_client.get(f"/fleet/{NAMES[1]}/").content.decode()
    assert 'class="canary-fail"' in page
    assert "not picked up within 120 s" in page
    assert "/runbooks/canary-failed/" in page
    page = sre_client.get(f"/fleet/{NAMES[0]}/").content.decode()
    assert 'class="canary-pass"' in page


def test_the_simulators_control_api_makes_a_runner_refuse_jobs(sim: Simulator) -> None:
    sim.add_runner("stuck-1")
    answer = requests.post(f"{sim.url}/_sim/runners/stuck-1/refuse-jobs", timeout=5)
    assert answer.status_code == 200
    assert answer.json()["takes_jobs"] is False
    # GitHub still shows it online and idle: only a job reveals it.
    listed = requests.get(
        f"{sim.url}/repos/acme/deploy/actions/runners",
        headers={"Authorization": "token x"},
        timeout=5,
    ).json()["runners"]
    assert [(r["status"], r["busy"]) for r in listed] == [("online", False)]
    answer = requests.post(f"{sim.url}/_sim/runners/stuck-1/take-jobs", timeout=5)
    assert answer.json()["takes_jobs"] is True


def test_an_admin_sets_the_canary_policy_and_interval_through_the_api(
    admin_user: User,
) -> None:
    make_env("production", pool_runner("prod-1"))
    client = Client()
    client.force_login(admin_user)
    url = "/api/v1/environments/production/"

    answer = client.patch(
        url,
        {"canary_policy": "advisory", "canary_interval_minutes": 15},
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.json()
    env = Environment.objects.get()
    assert (env.canary_policy, env.canary_interval_minutes) == ("advisory", 15)

    answer = client.patch(
        url, {"canary_policy": "sometimes"}, content_type="application/json"
    )
    assert answer.status_code == 400
    assert "canary_policy" in answer.json()
    answer = client.patch(
        url, {"canary_interval_minutes": -5}, content_type="application/json"
    )
    assert answer.status_code == 400
    assert "canary_interval_minutes" in answer.json()
    assert Environment.objects.get().canary_policy == "advisory"
