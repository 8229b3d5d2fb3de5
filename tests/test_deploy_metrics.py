"""Deploy and notification metrics on /metrics, computed from the database."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from controlplane.models import Notification
from deploys.metrics import DeployCollector, NotificationCollector
from deploys.models import DeployAttempt, DeployRun, Environment
from tests.clients import scrape
from tests.conftest import require_tool
from tests.factories import make_env, make_runner

pytestmark = pytest.mark.django_db


def env_of_two(name: str) -> Environment:
    """An environment whose pool is two runners never seen yet."""
    return make_env(name, make_runner(f"{name}-1"), make_runner(f"{name}-2"))


def make_run(
    env: Environment,
    state: str,
    *,
    queued: float = 0.0,
    duration: float | None = None,
    **kw: Any,
) -> DeployRun:
    """A run created ``queued`` seconds before it started, finished ``duration``
    seconds after (when given)."""
    created = timezone.now() - timedelta(hours=1)
    started = created + timedelta(seconds=queued) if state != "queued" else None
    finished = (
        started + timedelta(seconds=duration)
        if started is not None and duration is not None
        else None
    )
    return DeployRun.objects.create(
        environment=env,
        ref="main",
        state=state,
        created_at=created,
        started_at=started,
        finished_at=finished,
        **kw,
    )


def make_attempt(
    run: DeployRun, number: int, *, pickup: float | None = None, failover: str = ""
) -> DeployAttempt:
    dispatched = run.created_at + timedelta(seconds=60)
    return DeployAttempt.objects.create(
        run=run,
        number=number,
        runner=run.environment.pool()[number - 1].runner,
        dispatched_at=dispatched,
        picked_up_at=dispatched + timedelta(seconds=pickup) if pickup else None,
        failover_reason=failover,
    )


def make_history() -> None:
    prod, staging = env_of_two("production"), env_of_two("staging")
    ok = make_run(prod, "succeeded", queued=10, duration=100)
    make_attempt(ok, 1, pickup=4)
    failed_over = make_run(prod, "succeeded", queued=30, duration=300)
    make_attempt(failed_over, 1, failover="runner_unhealthy")
    make_attempt(failed_over, 2, pickup=8)
    make_run(prod, "failed", queued=0, duration=50, reason="deploy_failed")
    make_run(prod, "running", queued=5)
    make_run(prod, "queued")
    make_run(prod, "queued")
    make_run(staging, "cancelled", queued=2, duration=1)


def test_deploy_families_describe_the_database(client: Client) -> None:
    make_history()
    Environment.objects.create(name="dr", repository="acme/deploy")

    m = scrape(client)

    assert m["controlplane_deploys_total"] == {
        (("environment", "production"), ("outcome", "failed")): 1,
        (("environment", "production"), ("outcome", "succeeded")): 2,
        (("environment", "staging"), ("outcome", "cancelled")): 1,
    }
    prod_ok = (("environment", "production"), ("outcome", "succeeded"))
    assert m["controlplane_deploy_duration_seconds_count"][prod_ok] == 2
    assert m["controlplane_deploy_duration_seconds_sum"][prod_ok] == pytest.approx(400)
    prod = (("environment", "production"),)
    # Four runs left the queue (10 + 30 + 0 + 5 s); the two still queued do not count.
    assert m["controlplane_deploy_queue_wait_seconds_count"][prod] == 4
    assert m["controlplane_deploy_queue_wait_seconds_sum"][prod] == pytest.approx(45)
    assert m["controlplane_deploy_pickup_seconds_count"][prod] == 2
    assert m["controlplane_deploy_pickup_seconds_sum"][prod] == pytest.approx(12)
    assert m["controlplane_deploy_failovers_total"] == {
        (("environment", "production"), ("reason", "runner_unhealthy")): 1
    }
    assert m["controlplane_deploys_active"] == {
        (("environment", "dr"),): 0,
        (("environment", "production"),): 1,
        (("environment", "staging"),): 0,
    }
    assert m["controlplane_deploys_queued"][prod] == 2
    assert m["controlplane_deploys_queued"][(("environment", "dr"),)] == 0
    up = m["controlplane_metrics_collector_up"]
    assert up[(("collector", "deploys"),)] == 1
    assert up[(("collector", "notifications"),)] == 1


def test_notifications_by_state(client: Client) -> None:
    for state in ("sent", "sent", "failed", "pending"):
        Notification.objects.create(
            kind="deploy_failed",
            severity="critical",
            subject="x",
            dedupe_key=f"k{Notification.objects.count()}",
            target="json:abc",
            state=state,
        )

    m = scrape(client)

    assert m["controlplane_notifications"] == {
        (("state", "failed"),): 1,
        (("state", "pending"),): 1,
        (("state", "sent"),): 2,
    }


@pytest.mark.parametrize("histories", [1, 5])
def test_one_query_per_family_whatever_the_history(
    histories: int, django_assert_num_queries: Any
) -> None:
    for n in range(histories):
        env = env_of_two(f"env-{n}")
        run = make_run(env, "succeeded", queued=1, duration=2)
        make_attempt(run, 1, pickup=1, failover="pickup_timeout")
        make_run(env, "queued")

    with django_assert_num_queries(6):
        families = list(DeployCollector().collect())
    with django_assert_num_queries(1):
        list(NotificationCollector().collect())

    assert len(families) == 7


def test_deploy_metrics_pass_promtool(client: Client) -> None:
    promtool = require_tool("promtool")
    make_history()
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=client.get("/metrics").content,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
