"""``/api/v1/environments/`` and ``/api/v1/deploys/``: roles, the idempotency
contract, validation naming the field, safeguards, cancel and query counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from controlplane.models import AuditEvent
from deploys.models import (
    DeployAttempt,
    DeployRun,
    Environment,
    FreezeWindow,
    IdempotencyRecord,
)
from deploys.request_errors import (
    DeployRefused,
    DeployRequestError,
    IdempotencyInProgress,
    IdempotencyMismatch,
)
from deploys.triggers import (
    caller_of,
    fingerprint,
    prune_idempotency_records,
    request_deploy,
)
from githubsim import Simulator
from runners.models import Runner, State
from tests.conftest import logged_in
from tests.factories import make_env, pool_runner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("github")]

DEPLOYS = "/api/v1/deploys/"
ENVIRONMENTS = "/api/v1/environments/"


def env_with_pool(name: str = "production", **kw: Any) -> Environment:
    """An environment whose pool is two healthy runners."""
    primary, secondary = (
        pool_runner(f"{name}-primary"),
        pool_runner(f"{name}-secondary"),
    )
    return make_env(name, primary, secondary, **kw)


def post_deploy(client: Client, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(DEPLOYS, body, content_type="application/json", headers=headers)


# Requesting ---------------------------------------------------------------------------


def test_sre_requests_a_deploy_and_gets_202_with_the_queued_run(sre: User) -> None:
    env_with_pool()

    response = post_deploy(
        logged_in(sre), {"environment": "production", "ref": "v1.2.3"}, key="abc"
    )

    assert response.status_code == 202
    data = response.json()
    run = DeployRun.objects.get()
    assert data["id"] == run.pk
    assert data["state"] == "queued"
    assert data["ref"] == "v1.2.3"
    assert data["requester_name"] == "sam-sre"
    assert [e["kind"] for e in data["events"]] == ["requested"]
    assert data["attempts"] == []
    assert "Idempotent-Replayed" not in response
    assert AuditEvent.objects.filter(action="deploy.request").count() == 1


def test_same_key_and_body_replays_the_same_run(sre: User) -> None:
    env_with_pool()
    client = logged_in(sre)
    body = {"environment": "production", "ref": "main", "change_ticket": "INFRA-1"}

    first = post_deploy(client, body, key="retry-me")
    second = post_deploy(client, body, key="retry-me")

    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert DeployRun.objects.count() == 1


def test_same_key_with_another_body_is_422(sre: User) -> None:
    env_with_pool()
    client = logged_in(sre)
    post_deploy(client, {"environment": "production", "ref": "main"}, key="k")

    response = post_deploy(client, {"environment": "production", "ref": "v2"}, key="k")

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert response.json()["field"] == "idempotency_key"
    assert DeployRun.objects.count() == 1


def test_keys_are_scoped_to_the_caller(sre: User, admin_user: User) -> None:
    env_with_pool()
    body = {"environment": "production", "ref": "main"}

    mine = post_deploy(logged_in(sre), body, key="shared")
    theirs = post_deploy(logged_in(admin_user), body, key="shared")

    assert theirs.status_code == 202
    assert theirs.json()["id"] != mine.json()["id"]
    assert "Idempotent-Replayed" not in theirs


def test_default_ref_is_part_of_the_fingerprint(sre: User) -> None:
    env = env_with_pool(default_ref="main")

    first = request_deploy(sre, env, "", idempotency_key="k")
    again = request_deploy(sre, env, "main", idempotency_key="k")

    assert again.run.pk == first.run.pk
    assert (first.created, again.created) == (True, False)
    with pytest.raises(IdempotencyMismatch):
        request_deploy(sre, env, "develop", idempotency_key="k")


def test_a_replay_answers_the_first_response_not_the_run_as_it_is_now(
    sre: User,
) -> None:
    env_with_pool()
    client = logged_in(sre)
    body = {"environment": "production", "ref": "main"}
    first = post_deploy(client, body, key="replay-me")
    DeployRun.objects.get().cancel("sam-sre", "changed my mind")

    again = post_deploy(client, body, key="replay-me")

    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.json()["state"] == "queued"
    assert again["Idempotent-Replayed"] == "true"
    # The run itself moved on; its detail page says so.
    assert client.get(f"{DEPLOYS}{first.json()['id']}/").json()["state"] == "cancelled"


def test_a_key_whose_first_request_is_in_flight_is_409_with_retry_after(
    sre: User,
) -> None:
    env = env_with_pool()
    body = {"environment": "production", "ref": "main"}
    # What a request in flight has committed: its reservation, no run yet.
    IdempotencyRecord.objects.create(
        caller=caller_of(sre),
        key="busy",
        fingerprint=fingerprint(env.name, "main", ""),
        reserved_at=timezone.now() - timedelta(seconds=5),
    )

    response = post_deploy(logged_in(sre), body, key="busy")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_progress"
    assert response.json()["field"] == "idempotency_key"
    assert response["Retry-After"] == "1"
    assert DeployRun.objects.count() == 0


def test_a_second_request_during_the_first_ones_transaction_is_refused(
    sre: User,
) -> None:
    env = env_with_pool()
    seen: list[str] = []

    def respond(run: DeployRun) -> dict[str, Any]:
        # Inside the first request's transaction, after its run was written.
        with pytest.raises(IdempotencyInProgress) as refused:
            request_deploy(sre, env, "main", idempotency_key="k", respond=respond)
        seen.append(refused.value.code)
        return {"id": run.pk}

    first = request_deploy(sre, env, "main", idempotency_key="k", respond=respond)
    again = request_deploy(sre, env, "main", idempotency_key="k")

    assert seen == ["idempotency_key_in_progress"]
    assert (first.created, again.created) == (True, False)
    assert again.run.pk == first.run.pk
    assert again.response == {"id": first.run.pk}
    assert DeployRun.objects.count() == 1


def test_a_reservation_abandoned_by_a_dead_process_is_taken_over(sre: User) -> None:
    env = env_with_pool()
    IdempotencyRecord.objects.create(
        caller=caller_of(sre),
        key="orphan",
        fingerprint=fingerprint(env.name, "main", ""),
        reserved_at=timezone.now() - timedelta(seconds=61),
    )

    response = post_deploy(
        logged_in(sre), {"environment": "production", "ref": "main"}, key="orphan"
    )

    assert response.status_code == 202
    assert "Idempotent-Replayed" not in response
    record = IdempotencyRecord.objects.get()
    assert record.run_id == response.json()["id"]
    assert record.response == response.json()


def test_a_refused_request_releases_its_key(sre: User) -> None:
    env = env_with_pool(paused=True)
    client = logged_in(sre)
    body = {"environment": "production", "ref": "main"}
    refused = post_deploy(client, body, key="after-the-pause")
    assert refused.status_code == 409
    assert IdempotencyRecord.objects.count() == 0
    env.paused = False
    env.save()

    accepted = post_deploy(client, body, key="after-the-pause")

    assert accepted.status_code == 202
    assert "Idempotent-Replayed" not in accepted
    assert DeployRun.objects.count() == 1


def test_keys_are_kept_for_the_retention_then_pruned(sre: User, settings: Any) -> None:
    settings.IDEMPOTENCY_KEY_RETENTION_HOURS = 24
    env = env_with_pool()
    old = request_deploy(sre, env, "main", idempotency_key="old")
    IdempotencyRecord.objects.filter(key="old").update(
        reserved_at=timezone.now() - timedelta(hours=24, seconds=1)
    )
    kept = request_deploy(sre, env, "main", idempotency_key="kept")
    IdempotencyRecord.objects.filter(key="kept").update(
        reserved_at=timezone.now() - timedelta(hours=23, minutes=59)
    )

    assert prune_idempotency_records() == 1

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["kept"]
    assert request_deploy(sre, env, "main", idempotency_key="kept").run == kept.run
    # The run stays; only the key is forgotten, so it may be used again.
    assert DeployRun.objects.filter(pk=old.run.pk).exists()
    assert request_deploy(sre, env, "main", idempotency_key="old").created


def test_pruning_is_scheduled_hourly_in_the_database() -> None:
    task = PeriodicTask.objects.get(task="deploys.tasks.prune_idempotency_keys")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "hours")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"environment": "nowhere"}, "environment"),
        ({"environment": "production", "ref": "../etc"}, "ref"),
        ({"environment": "production", "ref": "-rf"}, "ref"),
        ({"ref": "main"}, "environment"),
        ({"environment": "production", "change_ticket": "x" * 101}, "change_ticket"),
    ],
)
def test_validation_errors_name_the_field(
    sre: User, body: dict[str, Any], field: str
) -> None:
    env_with_pool()

    response = post_deploy(logged_in(sre), body)

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert DeployRun.objects.count() == 0


def test_bad_idempotency_key_is_named(sre: User) -> None:
    env_with_pool()

    response = post_deploy(logged_in(sre), {"environment": "production"}, key="a b")

    assert response.status_code == 400
    assert list(response.json()) == ["idempotency_key"]


def test_change_ticket_must_match_the_environment_pattern(sre: User) -> None:
    env_with_pool(change_ticket_pattern=r"INFRA-\d+")
    client = logged_in(sre)

    refused = post_deploy(client, {"environment": "production", "change_ticket": "x"})
    accepted = post_deploy(
        client, {"environment": "production", "change_ticket": "INFRA-42"}
    )

    assert refused.status_code == 400
    assert "INFRA-" in refused.json()["change_ticket"][0]
    assert accepted.status_code == 202


def test_paused_environment_refuses_deploys(sre: User) -> None:
    env_with_pool(paused=True, paused_reason="incident 77")

    response = post_deploy(logged_in(sre), {"environment": "production"})

    assert response.status_code == 409
    assert response.json()["code"] == "refused"
    assert "incident 77" in response.json()["detail"]


def test_reject_policy_refuses_while_one_is_unfinished(sre: User) -> None:
    env = env_with_pool(policy=Environment.Policy.REJECT)
    request_deploy(sre, env, "main")

    with pytest.raises(DeployRefused) as refused:
        request_deploy(sre, env, "v2")

    assert refused.value.field == "environment"
    assert DeployRun.objects.count() == 1


def test_queue_policy_queues_behind_the_running_one(sre: User) -> None:
    env = env_with_pool()
    request_deploy(sre, env, "main")

    second = request_deploy(sre, env, "v2")

    assert second.run.state == DeployRun.State.QUEUED
    assert DeployRun.objects.count() == 2


def test_unknown_environment_is_a_field_error() -> None:
    with pytest.raises(DeployRequestError) as error:
        request_deploy(User(), "nowhere")
    assert error.value.field == "environment"


@pytest.mark.parametrize("persona", ["viewer", "outsider"])
def test_only_sres_request_deploys(
    persona: str, request: pytest.FixtureRequest
) -> None:
    env_with_pool()
    user: User = request.getfixturevalue(persona)

    response = post_deploy(logged_in(user), {"environment": "production"})

    assert response.status_code == 403
    assert DeployRun.objects.count() == 0


# Reading ----------------------------------------------------------------------------------


def test_list_filters_by_environment_and_state(sre: User, viewer: User) -> None:
    prod = env_with_pool("production")
    staging = env_with_pool("staging")
    done = request_deploy(sre, prod, "v1").run
    DeployRun.objects.filter(pk=done.pk).update(state=DeployRun.State.SUCCEEDED)
    request_deploy(sre, prod, "v2")
    request_deploy(sre, staging, "v3")
    client = logged_in(viewer)

    by_env = client.get(DEPLOYS, {"environment": "production"}).json()
    by_state = client.get(DEPLOYS, {"state": "succeeded"}).json()

    assert [r["ref"] for r in by_env["results"]] == ["v2", "v1"]
    assert [r["ref"] for r in by_state["results"]] == ["v1"]


@pytest.mark.parametrize("count", [2, 12])
def test_list_query_count_does_not_grow_with_runs(
    sre: User,
    viewer: User,
    count: int,
    django_assert_num_queries: Any,
    github: Simulator,
) -> None:
    env = env_with_pool()
    runner = Runner.objects.get(name="production-primary")
    for n in range(count):
        github.create_tag(f"release-{n}", github.push())
        run = request_deploy(sre, env, f"release-{n}").run
        DeployAttempt.objects.create(run=run, number=1, runner=runner)
    client = logged_in(viewer)
    client.get(DEPLOYS)  # warm the session and role caches

    # session, user, groups (role), count, page.
    with django_assert_num_queries(5):
        response = client.get(DEPLOYS)

    assert response.status_code == 200
    assert response.json()["count"] == count
    assert {r["runner"] for r in response.json()["results"]} == {"production-primary"}
    assert {r["attempt_count"] for r in response.json()["results"]} == {1}


def test_detail_has_attempts_and_events(sre: User, viewer: User) -> None:
    env = env_with_pool()
    run = request_deploy(sre, env, "main").run
    runner = Runner.objects.get(name="production-secondary")
    DeployAttempt.objects.create(
        run=run, number=1, runner=runner, failover_reason="pickup_timeout"
    )

    data = logged_in(viewer).get(f"{DEPLOYS}{run.pk}/").json()

    assert data["attempts"][0]["runner"] == "production-secondary"
    assert data["attempts"][0]["failover_reason"] == "pickup_timeout"
    assert data["events"][0]["kind"] == "requested"
    assert data["runner"] == "production-secondary"


# Cancel -------------------------------------------------------------------------------


def test_sre_cancels_a_queued_deploy(sre: User) -> None:
    env = env_with_pool()
    run = request_deploy(sre, env, "main").run
    client = logged_in(sre)

    response = client.post(
        f"{DEPLOYS}{run.pk}/cancel/",
        {"note": "wrong ref"},
        content_type="application/json",
    )
    again = client.post(f"{DEPLOYS}{run.pk}/cancel/")

    assert response.status_code == 202
    assert response.json()["state"] == "cancelled"
    assert response.json()["events"][-1]["message"] == "cancelled by sam-sre: wrong ref"
    assert again.status_code == 202
    assert AuditEvent.objects.filter(action="deploy.cancel").count() == 1


def test_cancel_of_a_finished_deploy_is_409(sre: User) -> None:
    env = env_with_pool()
    run = request_deploy(sre, env, "main").run
    DeployRun.objects.filter(pk=run.pk).update(state=DeployRun.State.SUCCEEDED)

    response = logged_in(sre).post(f"{DEPLOYS}{run.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["code"] == "finished"


def test_viewer_cannot_cancel(sre: User, viewer: User) -> None:
    run = request_deploy(sre, env_with_pool(), "main").run

    response = logged_in(viewer).post(f"{DEPLOYS}{run.pk}/cancel/")

    assert response.status_code == 403
    run.refresh_from_db()
    assert run.state == DeployRun.State.QUEUED


def test_redeploy_last_good_repeats_the_last_succeeded_ref(sre: User) -> None:
    env = env_with_pool()
    good = request_deploy(sre, env, "v1", "INFRA-1").run
    bad = request_deploy(sre, env, "v2").run
    DeployRun.objects.filter(pk=good.pk).update(
        state=DeployRun.State.SUCCEEDED, finished_at=timezone.now()
    )
    DeployRun.objects.filter(pk=bad.pk).update(
        state=DeployRun.State.FAILED, finished_at=timezone.now()
    )

    response = logged_in(sre).post(
        f"{DEPLOYS}redeploy-last-good/",
        {"environment": "production"},
        content_type="application/json",
    )

    assert response.status_code == 202
    assert response.json()["ref"] == "v1"
    assert response.json()["change_ticket"] == "INFRA-1"
    assert response.json()["state"] == "queued"


def test_redeploy_without_a_good_deploy_names_the_environment(sre: User) -> None:
    env_with_pool()

    response = logged_in(sre).post(
        f"{DEPLOYS}redeploy-last-good/",
        {"environment": "production"},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert list(response.json()) == ["environment"]


# Environments -------------------------------------------------------------------------------


def test_admin_creates_an_environment_with_an_ordered_pool(admin_user: User) -> None:
    for name in ("a", "b", "c"):
        Runner.objects.create(name=name)

    response = logged_in(admin_user).post(
        ENVIRONMENTS,
        {
            "name": "production",
            "repository": "acme/deploy",
            "pool": ["c", "a"],
            "required_secrets": ["DEPLOY_KEY"],
            "change_ticket_pattern": r"^INFRA-\d+$",
        },
        content_type="application/json",
    )

    assert response.status_code == 201, response.json()
    env = Environment.objects.get(name="production")
    assert [e.runner.name for e in env.pool()] == ["c", "a"]
    assert response.json()["pool"] == ["c", "a"]
    assert response.json()["pickup_timeout"] == 120
    assert response.json()["busy_wait"] == 120
    assert response.json()["max_attempts"] == 3
    assert AuditEvent.objects.filter(action="environment.create").count() == 1


def test_busy_wait_is_set_per_environment(admin_user: User) -> None:
    env_with_pool()

    response = logged_in(admin_user).patch(
        f"{ENVIRONMENTS}production/", {"busy_wait": 0}, content_type="application/json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["busy_wait"] == 0
    assert Environment.objects.get(name="production").busy_wait == 0


def test_pool_order_changes_with_patch(admin_user: User) -> None:
    env_with_pool()

    response = logged_in(admin_user).patch(
        f"{ENVIRONMENTS}production/",
        {"pool": ["production-secondary", "production-primary"]},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert [s["runner"] for s in response.json()["pool_status"]] == [
        "production-secondary",
        "production-primary",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pool": ["ghost"]}, "pool"),
        ({"pool": ["production-primary", "production-primary"]}, "pool"),
        ({"repository": "no-slash"}, "repository"),
        ({"change_ticket_pattern": "("}, "change_ticket_pattern"),
        ({"required_secrets": ["not a name"]}, "required_secrets"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"busy_wait": -1}, "busy_wait"),
        ({"busy_wait": 86401}, "busy_wait"),
        ({"busy_wait": "soon"}, "busy_wait"),
    ],
)
def test_environment_validation_names_the_field(
    admin_user: User, body: dict[str, Any], field: str
) -> None:
    env_with_pool()

    response = logged_in(admin_user).patch(
        f"{ENVIRONMENTS}production/", body, content_type="application/json"
    )

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_sre_reads_environments_with_pool_health_but_cannot_write(sre: User) -> None:
    env_with_pool()
    Runner.objects.filter(name="production-primary").update(
        state=State.UNHEALTHY, reason="heartbeat_stale"
    )
    client = logged_in(sre)

    data = client.get(f"{ENVIRONMENTS}production/").json()
    write = client.patch(
        f"{ENVIRONMENTS}production/", {"paused": True}, content_type="application/json"
    )

    primary = data["pool_status"][0]
    assert primary["eligible"] is False
    assert primary["ineligibility_reasons"] == ["unhealthy (heartbeat stale)"]
    assert write.status_code == 403


# Freeze windows and break glass -------------------------------------------------------


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "frozen"),
    [
        (utc(2026, 11, 27, 21, 59), False),  # Friday, just before
        (utc(2026, 11, 27, 22, 0), True),  # Friday 22:00, the start
        (utc(2026, 11, 28, 12, 0), True),  # Saturday
        (utc(2026, 11, 30, 5, 59), True),  # Monday, across the week's end
        (utc(2026, 11, 30, 6, 0), False),  # Monday 06:00, the end
        (utc(2026, 12, 2, 23, 0), False),  # Wednesday
    ],
)
def test_weekly_window_covers_its_span_across_midnight_and_week_end(
    moment: datetime, frozen: bool
) -> None:
    env = env_with_pool()
    # Friday 22:00 UTC for 56 hours: until Monday 06:00.
    window = FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.WEEKLY,
        reason="weekend",
        weekday=4,
        start_time=dt_time(22, 0),
        duration_minutes=56 * 60,
    )

    assert window.covers(moment) is frozen


def test_one_off_window_covers_its_interval() -> None:
    env = env_with_pool()
    window = FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="Black Friday",
        starts_at=utc(2026, 11, 27),
        ends_at=utc(2026, 11, 28),
    )

    assert window.covers(utc(2026, 11, 27, 12))
    assert not window.covers(utc(2026, 11, 28))
    assert not window.covers(utc(2026, 11, 26, 23, 59))


def test_a_window_must_have_its_shape() -> None:
    env = env_with_pool()
    with pytest.raises(IntegrityError):
        FreezeWindow.objects.create(
            environment=env, kind=FreezeWindow.Kind.WEEKLY, reason="no times"
        )


def freeze_now(env: Environment) -> FreezeWindow:
    now = timezone.now()
    return FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="incident review",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )


def test_freeze_refuses_deploys_and_says_an_admin_may_break_glass(sre: User) -> None:
    freeze_now(env_with_pool())

    response = post_deploy(logged_in(sre), {"environment": "production"})

    assert response.status_code == 409
    assert "incident review" in response.json()["detail"]
    assert "break glass" in response.json()["detail"]
    assert DeployRun.objects.count() == 0


def test_only_admins_break_glass(sre: User) -> None:
    freeze_now(env_with_pool())

    response = post_deploy(
        logged_in(sre),
        {"environment": "production", "break_glass_reason": "hotfix"},
    )

    assert response.status_code == 403
    assert response.json()["field"] == "break_glass_reason"
    assert DeployRun.objects.count() == 0


def test_admin_breaks_glass_with_a_reason_audited_and_on_the_timeline(
    admin_user: User,
) -> None:
    freeze_now(env_with_pool())

    response = post_deploy(
        logged_in(admin_user),
        {"environment": "production", "break_glass_reason": "CVE hotfix"},
    )

    assert response.status_code == 202
    events = response.json()["events"]
    assert [e["kind"] for e in events] == ["requested", "break_glass"]
    assert events[1]["message"] == "freeze broken by ada-admin: CVE hotfix"
    audit = AuditEvent.objects.get(action="deploy.break_glass")
    assert audit.detail == {"freeze": "incident review", "reason": "CVE hotfix"}


def test_environment_shows_the_freeze_in_force(sre: User) -> None:
    freeze_now(env_with_pool())

    data = logged_in(sre).get(f"{ENVIRONMENTS}production/").json()

    assert data["frozen"] == "incident review"
    assert [w["kind"] for w in data["freeze_windows"]] == ["one_off"]
