"""Stopped background jobs: the banner on every page and ``/readyz``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.liveness import watched_jobs
from controlplane.models import TaskStatus
from diagnostics.schedules import SCHEDULES
from inventory.schedules import SCHEDULES as INVENTORY_SCHEDULES

pytestmark = pytest.mark.django_db


def succeeded(name: str, seconds_ago: float) -> None:
    TaskStatus.objects.update_or_create(
        name=name,
        defaults={"last_success_at": timezone.now() - timedelta(seconds=seconds_ago)},
    )


def all_fresh() -> None:
    for job in watched_jobs():
        succeeded(job.name, 1)


def test_readyz_lists_a_stale_and_a_never_run_job_but_stays_ready(
    client: Client,
) -> None:
    all_fresh()
    succeeded("beat", 300)
    TaskStatus.objects.filter(name="health_sweep").delete()

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["failed"] == []
    stale = {job["job"]: job for job in body["stale_jobs"]}
    assert set(stale) == {"beat", "health_sweep"}
    assert 300 <= stale["beat"]["seconds_since_success"] < 360
    assert stale["beat"]["bound_seconds"] == 60
    assert stale["health_sweep"]["seconds_since_success"] is None


def test_a_job_just_inside_its_bound_is_not_stale(client: Client) -> None:
    all_fresh()
    succeeded("beat", 50)
    assert client.get("/readyz").json()["stale_jobs"] == []


def test_every_page_shows_the_stopped_job_with_its_runbook(
    sre_client: Client,
) -> None:
    all_fresh()
    succeeded("beat", 600)
    for path in ("/", "/fleet/", "/deploys/", "/secrets/", "/runbooks/", "/audit/"):
        page = sre_client.get(path).content.decode()
        assert 'data-job="beat"' in page, path
        assert "not succeeded for 10" in page, path
        assert 'href="/runbooks/celery-beat-stale/"' in page, path
        assert 'data-job="health_sweep"' not in page, path


def test_no_banner_when_every_job_runs(sre_client: Client) -> None:
    all_fresh()
    assert "stale-jobs" not in sre_client.get("/").content.decode()


def test_the_banner_costs_one_query_and_none_for_visitors(
    client: Client, sre_client: Client
) -> None:
    with CaptureQueriesContext(connection) as queries:
        page = sre_client.get("/runbooks/").content.decode()
    # None ever ran: every job is named but those that wait for their first run.
    named = [job for job in watched_jobs() if job.stale_if_never_ran]
    assert page.count("<li data-job=") == len(named) >= 4
    assert sum("controlplane_taskstatus" in q["sql"] for q in queries) == 1

    with CaptureQueriesContext(connection) as queries:
        login = client.get("/accounts/login/").content.decode()
    assert "stale-jobs" not in login
    assert not any("controlplane_taskstatus" in q["sql"] for q in queries)


def test_a_stopped_diagnostics_watch_is_named_within_twelve_of_its_intervals(
    client: Client,
) -> None:
    [schedule] = [s for s in SCHEDULES if s.task == "diagnostics.tasks.watch_host_runs"]
    assert isinstance(schedule.every, int)
    bound = {job.name: job.bound_seconds for job in watched_jobs()}
    assert bound["diagnostics_watch"] == 12 * schedule.every
    all_fresh()
    succeeded("diagnostics_watch", bound["diagnostics_watch"] - 5)
    assert client.get("/readyz").json()["stale_jobs"] == []

    succeeded("diagnostics_watch", bound["diagnostics_watch"] + 5)

    [stale] = client.get("/readyz").json()["stale_jobs"]
    assert stale["job"] == "diagnostics_watch"


def test_a_stopped_canary_schedule_is_named_within_three_intervals(
    client: Client, sre_client: Client
) -> None:
    [schedule] = [
        s for s in SCHEDULES if s.task == "diagnostics.tasks.schedule_canaries"
    ]
    assert isinstance(schedule.every, int)
    bound = {job.name: job.bound_seconds for job in watched_jobs()}
    assert bound["canary_schedule"] == 3 * schedule.every
    all_fresh()
    succeeded("canary_schedule", bound["canary_schedule"] - 5)
    assert client.get("/readyz").json()["stale_jobs"] == []

    succeeded("canary_schedule", bound["canary_schedule"] + 5)
    [stale] = client.get("/readyz").json()["stale_jobs"]
    assert stale["job"] == "canary_schedule"
    page = sre_client.get("/").content.decode()
    assert 'data-job="canary_schedule"' in page
    assert "no canary job is sent" in page

    # Before its first run (a minute after beat first starts) it is not named:
    # a new install does not open on a red banner.
    TaskStatus.objects.filter(name="canary_schedule").delete()
    assert client.get("/readyz").json()["stale_jobs"] == []


def test_a_stopped_inventory_file_watch_is_named_within_three_intervals(
    client: Client,
) -> None:
    [schedule] = INVENTORY_SCHEDULES
    assert isinstance(schedule.every, int)
    bound = {job.name: job.bound_seconds for job in watched_jobs()}
    assert bound["inventory_file"] == 3 * schedule.every
    all_fresh()
    assert client.get("/readyz").json()["stale_jobs"] == []

    succeeded("inventory_file", bound["inventory_file"] + 5)
    [stale] = client.get("/readyz").json()["stale_jobs"]
    assert stale["job"] == "inventory_file"
