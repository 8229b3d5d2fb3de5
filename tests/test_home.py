"""The home page is a status board: open alerts named by the control plane's own
rules with their runbooks, runners by state with the unhealthy ones named, one row
per environment, the last deploys, what is overdue, and background tasks, in a
fixed number of queries whatever the fleet's size."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.liveness import watched_jobs
from controlplane.models import TaskStatus
from controlplane.templatetags.ages import describe_age
from deploys.models import DeployAttempt, DeployRun, FreezeWindow
from rotations.models import SecretRotationSchedule
from runners.models import Reason, Runner, State
from tests.conftest import logged_in
from tests.factories import make_env, make_schedule, pool_runner

pytestmark = pytest.mark.django_db


def fleet_of(size: int, start: int = 0) -> None:
    now = timezone.now()
    Runner.objects.bulk_create(
        Runner(
            name=f"bulk-{start + i:05d}",
            state=State.HEALTHY if i % 5 else State.UNHEALTHY,
            reason="" if i % 5 else Reason.HEARTBEAT_STALE,
            heartbeat_deadline=now + timedelta(seconds=30)
            if i % 5
            else now - timedelta(seconds=60),
            last_heartbeat_at=now,
        )
        for i in range(size)
    )


def board_scene() -> None:
    """A production environment whose primary died and whose last deploy failed
    over to the secondary; a frozen staging; an overdue secret."""
    now = timezone.now()
    primary = pool_runner(
        "prod-primary-1",
        State.UNHEALTHY,
        heartbeat_deadline=now - timedelta(seconds=40),
        last_heartbeat_at=now - timedelta(seconds=50),
    )
    secondary = pool_runner("prod-secondary-1")
    prod = make_env("production", primary, secondary)
    staging = make_env("staging", secondary)
    FreezeWindow.objects.create(
        environment=staging,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="release week",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=5),
    )
    run = DeployRun.objects.create(
        environment=prod,
        ref="main",
        requester_name="ada",
        state=DeployRun.State.SUCCEEDED,
        created_at=now - timedelta(minutes=3),
        finished_at=now - timedelta(minutes=1),
    )
    DeployAttempt.objects.create(
        run=run,
        number=1,
        runner=primary,
        state=DeployAttempt.State.CANCELLED,
        failover_reason=DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
        finished_at=now - timedelta(minutes=2),
    )
    DeployAttempt.objects.create(
        run=run,
        number=2,
        runner=secondary,
        state=DeployAttempt.State.SUCCEEDED,
        finished_at=now - timedelta(minutes=1),
    )
    make_schedule(
        "PROD_DB_PASSWORD",
        scope=SecretRotationSchedule.Scope.ENVIRONMENT,
        environment=prod,
        last_rotated_at=now - timedelta(days=200),
        last_checked_at=now,
        present=True,
    )
    for job in watched_jobs():
        TaskStatus.objects.record(job.name, ok=True, duration=0.1)


def test_home_names_what_is_broken_with_rules_and_runbooks(viewer: User) -> None:
    board_scene()

    html = logged_in(viewer).get("/").content.decode()

    # Open alerts: the rule's name and its runbook.
    assert 'data-rule="RunnerHeartbeatStale"' in html
    assert 'href="/runbooks/runner-heartbeat-stale/"' in html
    assert 'data-rule="DeployFailedOver"' in html
    assert 'href="/runbooks/deploy-failed-over/"' in html
    assert 'data-rule="SecretOverdue"' in html
    # The dead runner by name, linked to its page.
    assert 'href="/fleet/prod-primary-1/"' in html
    # One row per environment: frozen with until when, the next runner.
    assert 'data-environment="staging"' in html
    assert "release week until" in html
    assert 'href="/fleet/prod-secondary-1/">prod-secondary-1</a>' in html
    assert "after failover" in html
    # No table of contents, no "0 minutes ago".
    assert "Sections" not in html.split("<main>")[1]
    assert "0 minutes" not in html


def test_home_without_problems_says_so(viewer: User) -> None:
    pool_runner("prod-1", heartbeat_deadline=timezone.now() + timedelta(seconds=30))
    for job in watched_jobs():
        TaskStatus.objects.record(job.name, ok=True, duration=0.1)

    html = logged_in(viewer).get("/").content.decode()

    assert "No open alerts" in html
    assert "All 1 runners are healthy." in html


def test_the_live_refresh_renders_the_board_only(viewer: User) -> None:
    board_scene()

    response = logged_in(viewer).get("/", headers={"HX-Request": "true"})

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="board"')
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]


def test_navigation_has_environments_and_admin_for_admins(
    viewer: User, admin_user: User
) -> None:
    viewer_html = logged_in(viewer).get("/").content.decode()
    admin_html = logged_in(admin_user).get("/").content.decode()

    assert 'href="/deploys/environments/">Environments</a>' in viewer_html
    assert 'href="/admin/"' not in viewer_html
    assert 'href="/admin/">Admin</a>' in admin_html


def home_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    return len(queries)


def test_home_queries_do_not_grow_with_the_fleet_or_history(viewer: User) -> None:
    client = logged_in(viewer)
    board_scene()
    fleet_of(10)
    client.get("/")  # the session's first save
    small = home_queries(client)

    fleet_of(400, start=10)
    for n in range(5):
        env = make_env(f"env-{n}", *Runner.objects.order_by("pk")[n * 2 : n * 2 + 2])
        for _ in range(3):
            DeployRun.objects.create(
                environment=env, ref="main", state=DeployRun.State.FAILED
            )
    make_schedule("OTHER_KEY", last_checked_at=timezone.now(), present=False)
    large = home_queries(client)

    assert small == large
    assert large <= 20


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "just now"), (3, "just now"), (12, "12 s ago"), (600, "10 min ago")],
)
def test_ages_read_as_words_never_zero_minutes(seconds: int, words: str) -> None:
    now = timezone.now()
    assert describe_age(now - timedelta(seconds=seconds), now) == words


def test_old_ages_are_absolute_times() -> None:
    now = timezone.now()
    then = now - timedelta(days=3)
    assert describe_age(then, now) == then.strftime("%Y-%m-%d %H:%M UTC")
