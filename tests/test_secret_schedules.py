"""Rotation schedules: status at its boundaries (frozen time), the same in SQL and
Python; the audit against the simulator (external rotations, missing secrets, a
GitHub failure); the schedules API; the metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane import metrics
from controlplane.models import AuditEvent
from deploys.models import Environment
from githubsim import Simulator, environment_scope, repository_scope
from rotations import domain
from rotations.models import SecretRotation, SecretRotationSchedule, Status
from tests.conftest import logged_in
from tests.factories import make_schedule

REPO = "acme/deploy"
ROTATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(time_scale=60, seed=5, demo=True, connect=True, max_retries=0),
]


def status_in_sql(schedule: SecretRotationSchedule) -> str:
    annotated = SecretRotationSchedule.objects.with_status(timezone.now()).get(
        pk=schedule.pk
    )
    return str(annotated.status)  # type: ignore[attr-defined]


# Status --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (ROTATED + 76 * DAY - SECOND, Status.OK),
        (ROTATED + 76 * DAY, Status.DUE_SOON),  # 90 days minus the 14-day warning
        (ROTATED + 90 * DAY - SECOND, Status.DUE_SOON),
        (ROTATED + 90 * DAY, Status.OVERDUE),
        (ROTATED + 400 * DAY, Status.OVERDUE),
    ],
    ids=["ok", "due-soon-starts", "due-soon-ends", "overdue-starts", "long-overdue"],
)
def test_status_at_its_boundaries(moment: datetime, expected: Status) -> None:
    schedule = make_schedule(
        last_rotated_at=ROTATED, last_checked_at=ROTATED, present=True
    )

    with time_machine.travel(moment, tick=False):
        assert schedule.status_at(timezone.now()) == expected
        assert status_in_sql(schedule) == expected


def test_never_checked_is_unknown_and_absent_is_missing() -> None:
    unchecked = make_schedule("A", last_rotated_at=ROTATED)
    absent = make_schedule(
        "B", last_rotated_at=ROTATED, last_checked_at=ROTATED, present=False
    )

    with time_machine.travel(ROTATED + DAY, tick=False):
        assert unchecked.status_at(timezone.now()) == Status.UNKNOWN
        assert status_in_sql(unchecked) == Status.UNKNOWN
        assert absent.status_at(timezone.now()) == Status.MISSING
        assert status_in_sql(absent) == Status.MISSING


def test_changing_the_interval_moves_the_due_date_at_once() -> None:
    schedule = make_schedule(
        last_rotated_at=ROTATED, last_checked_at=ROTATED, present=True
    )

    schedule.interval_days = 30
    schedule.save(update_fields=["interval_days"])

    schedule.refresh_from_db()
    assert schedule.next_due == ROTATED + 30 * DAY
    assert schedule.warn_at == ROTATED + 16 * DAY


def test_urgency_order_is_computed_in_sql() -> None:
    seen = dict(last_checked_at=ROTATED, present=True)
    make_schedule("FRESH", last_rotated_at=ROTATED + 80 * DAY, **seen)
    make_schedule("SOON", last_rotated_at=ROTATED + 10 * DAY, **seen)
    make_schedule(
        "GONE", last_rotated_at=ROTATED, last_checked_at=ROTATED, present=False
    )
    make_schedule("UNCHECKED")
    make_schedule("LATE", last_rotated_at=ROTATED - 10 * DAY, **seen)

    with time_machine.travel(ROTATED + 90 * DAY, tick=False):
        names = list(
            SecretRotationSchedule.objects.by_urgency(timezone.now()).values_list(
                "name", flat=True
            )
        )

    assert names == ["LATE", "GONE", "SOON", "UNCHECKED", "FRESH"]


# Audit ---------------------------------------------------------------------------


def test_first_audit_takes_githubs_date_as_the_last_rotation(sim: Simulator) -> None:
    schedule = make_schedule("REGISTRY_TOKEN")

    report = domain.audit_schedules()

    schedule.refresh_from_db()
    assert report.checked == 1
    assert schedule.present is True
    assert schedule.last_rotated_at is not None
    # The demo's token was last changed 120 days ago.
    age = timezone.now() - schedule.last_rotated_at
    assert 119 * DAY < age < 121 * DAY
    assert schedule.status_at(timezone.now()) == Status.OVERDUE
    assert not SecretRotation.objects.exists()  # a baseline, not a rotation


def test_change_made_outside_the_control_plane_is_recorded(sim: Simulator) -> None:
    schedule = make_schedule("DEPLOY_KEY")
    domain.audit_schedules()
    sim.state.set_secret(repository_scope(REPO), "DEPLOY_KEY", "changed-by-hand")

    report = domain.audit_schedules()

    assert report.external == ["DEPLOY_KEY"]
    rotation = schedule.rotations.get()
    assert rotation.source == SecretRotation.Source.EXTERNAL
    schedule.refresh_from_db()
    assert schedule.last_rotated_at == rotation.rotated_at
    assert (
        AuditEvent.objects.filter(action="secret.detect_external_rotation").count() == 1
    )
    # Seen once, recorded once.
    assert domain.audit_schedules().external == []


def test_missing_secret_is_flagged(sim: Simulator) -> None:
    env = Environment.objects.create(name="production", repository=REPO)
    schedule = make_schedule("PROD_DB_PASSWORD", scope="environment", environment=env)
    sim.state.secret_store(environment_scope(REPO, "production")).delete(
        "PROD_DB_PASSWORD"
    )

    report = domain.audit_schedules()

    assert report.missing == ["PROD_DB_PASSWORD"]
    schedule.refresh_from_db()
    assert schedule.status_at(timezone.now()) == Status.MISSING


def test_one_list_call_per_target(sim: Simulator) -> None:
    for name in ("DEPLOY_KEY", "REGISTRY_TOKEN", "NOT_THERE"):
        make_schedule(name)
    sim.state.limits.reset_request_counts()

    domain.audit_schedules()

    assert (
        sim.state.limits.request_count("GET /repos/{owner}/{repo}/actions/secrets") == 1
    )


def test_github_failure_keeps_the_previous_findings(sim: Simulator) -> None:
    schedule = make_schedule("DEPLOY_KEY")
    domain.audit_schedules()
    schedule.refresh_from_db()
    checked = schedule.last_checked_at
    sim.set_faults(error_rate=1.0)

    report = domain.audit_schedules()

    assert report.errors and "GitHubUnavailable" in report.errors[0]
    schedule.refresh_from_db()
    assert schedule.last_checked_at == checked
    assert schedule.present is True
    assert "GitHubUnavailable" in schedule.last_check_error


def test_beat_task_records_its_run(sim: Simulator) -> None:
    from controlplane.models import TaskStatus
    from rotations.tasks import audit_secrets

    make_schedule("DEPLOY_KEY")

    audit_secrets()

    status = TaskStatus.objects.get(name="secrets_audit")
    assert status.last_success_at is not None
    assert status.last_failure_at is None
    assert SecretRotationSchedule.objects.get().present is True


def test_beat_row_names_the_audit_task() -> None:
    # The task kept its dotted name when it moved apps: beat's row still finds it.
    from django_celery_beat.models import PeriodicTask

    from controlplane.celery import app
    from rotations.tasks import audit_secrets

    row = PeriodicTask.objects.get(name="Audit secrets against GitHub")
    assert app.tasks[row.task].run is audit_secrets.run


# API -----------------------------------------------------------------------------


def test_admin_creates_a_schedule_through_the_api(admin_user: User) -> None:
    env = Environment.objects.create(name="production", repository=REPO)

    response = logged_in(admin_user).post(
        "/api/v1/secret-schedules/",
        {
            "name": "prod_db_password",
            "scope": "environment",
            "environment": "production",
            "required_by": ["production"],
            "owner": "db-team",
        },
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "PROD_DB_PASSWORD"
    assert body["interval_days"] == 90
    assert body["warning_days"] == 14
    assert body["status"] == "unknown"
    schedule = SecretRotationSchedule.objects.get()
    assert list(schedule.required_by.all()) == [env]
    assert AuditEvent.objects.filter(action="secret_schedule.create").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "1BAD"}, "name"),
        ({"name": "GITHUB_TOKEN"}, "name"),
        ({"name": "OK_NAME", "scope": "environment"}, "environment"),
        ({"name": "OK_NAME", "interval_days": 0}, "interval_days"),
        # PostgreSQL refuses a NUL in a query: an unknown name, not a 500.
        (
            {"name": "OK_NAME", "scope": "environment", "environment": "\x00prod"},
            "environment",
        ),
        ({"name": "OK_NAME", "required_by": ["prod\x00"]}, "required_by"),
    ],
)
def test_api_refuses_bad_schedules(
    admin_user: User, body: dict[str, Any], field: str
) -> None:
    response = logged_in(admin_user).post(
        "/api/v1/secret-schedules/", body, content_type="application/json"
    )

    assert response.status_code == 400
    assert field in response.json()


def test_api_refuses_a_second_schedule_for_the_same_secret(admin_user: User) -> None:
    make_schedule("DEPLOY_KEY")

    response = logged_in(admin_user).post(
        "/api/v1/secret-schedules/",
        {"name": "deploy_key"},
        content_type="application/json",
    )

    # A valid request that clashes with an existing schedule: a conflict.
    assert response.status_code == 409
    assert "exists already" in response.json()["name"][0]


@pytest.mark.parametrize("persona", ["viewer", "sre"])
def test_only_admins_edit_schedules(
    persona: str, request: pytest.FixtureRequest
) -> None:
    user: User = request.getfixturevalue(persona)

    response = logged_in(user).post(
        "/api/v1/secret-schedules/", {"name": "X"}, content_type="application/json"
    )

    assert response.status_code == 403
    assert not SecretRotationSchedule.objects.exists()


def test_api_list_is_sorted_by_urgency_in_a_fixed_number_of_queries(
    viewer: User,
) -> None:
    env = Environment.objects.create(name="production", repository=REPO)
    client = logged_in(viewer)
    client.get("/api/v1/secret-schedules/")
    now = timezone.now()
    seen = dict(last_checked_at=now, present=True)

    def add(count: int, start: int) -> None:
        for i in range(start, start + count):
            make_schedule(
                f"S{i:03}", last_rotated_at=now - (i % 100) * DAY, **seen
            ).required_by.add(env)

    add(3, 0)
    with CaptureQueriesContext(connection) as small:
        client.get("/api/v1/secret-schedules/")
    add(40, 3)
    with CaptureQueriesContext(connection) as large:
        response = client.get("/api/v1/secret-schedules/")

    assert len(small) == len(large)
    statuses = [row["status"] for row in response.json()["results"]]
    ranks = {"overdue": 0, "missing": 1, "due_soon": 2, "unknown": 3, "ok": 4}
    assert [ranks[s] for s in statuses] == sorted(ranks[s] for s in statuses)


def test_sre_runs_the_audit_through_the_api(sim: Simulator, sre: User) -> None:
    make_schedule("NOT_THERE")

    response = logged_in(sre).post("/api/v1/secret-schedules/audit/")

    assert response.status_code == 200
    assert response.json()["missing"] == ["NOT_THERE"]


def test_admin_imports_through_the_api(sim: Simulator, admin_user: User) -> None:
    client = logged_in(admin_user)
    proposals = client.get("/api/v1/secret-schedules/import-proposals/").json()
    keys = [p["key"] for p in proposals["proposals"]]
    assert keys == ["repository::DEPLOY_KEY", "repository::REGISTRY_TOKEN"]

    response = client.post(
        "/api/v1/secret-schedules/import/",
        {"keys": ["repository::REGISTRY_TOKEN", "repository::NOT_PROPOSED"]},
        content_type="application/json",
    )

    assert response.status_code == 201
    created = response.json()["created"]
    assert [s["name"] for s in created] == ["REGISTRY_TOKEN"]
    assert created[0]["status"] == "overdue"


# Metrics -------------------------------------------------------------------------


def test_metrics_show_days_until_due_and_counts_by_status(client: Any) -> None:
    now = timezone.now()
    make_schedule(
        "LATE", last_rotated_at=now - 100 * DAY, last_checked_at=now, present=True
    )
    make_schedule("NEVER")

    text = client.get("/metrics").content.decode()

    lines = [
        line for line in text.splitlines() if line.startswith("controlplane_secret")
    ]
    due = next(
        line for line in lines if line.startswith("controlplane_secret_days_until_due")
    )
    assert 'secret="LATE"' in due
    assert -10.1 < float(due.rsplit(" ", 1)[1]) < -9.9
    assert 'controlplane_secrets{status="overdue"} 1.0' in lines
    assert 'controlplane_secrets{status="unknown"} 1.0' in lines
    assert 'controlplane_secrets{status="ok"} 0.0' in lines
    assert metrics.collectors()  # the collector is registered once, at start-up


# Notifications -------------------------------------------------------------------


def test_audit_notifies_once_when_a_secret_turns_missing_or_overdue(
    sim: Simulator, settings: Any
) -> None:
    from controlplane.models import Notification

    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    make_schedule("NOT_THERE", owner="db-team")
    make_schedule("REGISTRY_TOKEN")  # 120 days old in the demo

    domain.audit_schedules()
    domain.audit_schedules()

    kinds = sorted(Notification.objects.values_list("kind", flat=True))
    assert kinds == ["secret_missing", "secret_overdue"]
    subjects = sorted(Notification.objects.values_list("subject", flat=True))
    assert subjects == [
        "Secret NOT_THERE is missing in GitHub",
        "Secret REGISTRY_TOKEN is overdue for rotation",
    ]
