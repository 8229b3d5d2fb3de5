"""What the on-call pages say about a deploy and an environment: the deploy's
headline, timeline drawn per attempt, countdown at the gate and the timeouts in
force when it was requested; Redeploy of a finished deploy after a confirmation;
the environment's paused/frozen banner, pause and resume (page and API, audited),
last good deploy; the deploy form without a default environment and with the
production confirmation. Query counts do not grow with attempts or events."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys.models import (
    DeployAttempt,
    DeployEvent,
    DeployRun,
    Environment,
    FreezeWindow,
)
from runners.models import Runner, State
from tests.conftest import logged_in
from tests.factories import make_env, pool_runner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("github")]

Kind = DeployEvent.Kind


def event(run: DeployRun, kind: str, at: Any, message: str = "", **kw: Any) -> None:
    DeployEvent.objects.create(run=run, kind=kind, message=message, created_at=at, **kw)


def failed_over(attempts: int = 2) -> tuple[DeployRun, Runner, Runner]:
    """prod-primary-1 died after picking the job up; the deploy failed over to
    prod-secondary-1 and succeeded. It waited 62 s at the gate first."""
    primary = pool_runner("prod-primary-1", State.UNHEALTHY)
    secondary = pool_runner("prod-secondary-1")
    env = make_env("production", primary, secondary)
    t0 = timezone.now() - timedelta(minutes=10)
    run = DeployRun.objects.create(
        environment=env,
        ref="main",
        sha="0123456789abcdef0123456789abcdef01234567",
        requester_name="sam-sre",
        state=DeployRun.State.SUCCEEDED,
        created_at=t0,
        gate_started_at=t0,
        started_at=t0,
        finished_at=t0 + timedelta(seconds=400),
        timeouts={"gate_timeout": 300, "pickup_timeout": 120},
    )
    event(run, Kind.GATING, t0)
    event(run, Kind.GATE_WAITING, t0 + timedelta(seconds=1), "no healthy runner")
    event(run, Kind.GATE_PASSED, t0 + timedelta(seconds=62), "goes to prod-primary-1")
    first = DeployAttempt.objects.create(
        run=run,
        number=1,
        runner=primary,
        state=DeployAttempt.State.CANCELLED,
        failover_reason=DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
        created_at=t0 + timedelta(seconds=62),
        dispatched_at=t0 + timedelta(seconds=63),
        picked_up_at=t0 + timedelta(seconds=70),
        finished_at=t0 + timedelta(seconds=200),
    )
    event(
        run,
        Kind.FAILOVER,
        t0 + timedelta(seconds=190),
        "prod-primary-1 turned unhealthy",
        attempt=first,
    )
    event(run, Kind.GATE_PASSED, t0 + timedelta(seconds=193), "goes to secondary")
    for n in range(2, attempts + 1):
        DeployAttempt.objects.create(
            run=run,
            number=n,
            runner=secondary,
            state=DeployAttempt.State.SUCCEEDED,
            created_at=t0 + timedelta(seconds=193),
            dispatched_at=t0 + timedelta(seconds=194),
            picked_up_at=t0 + timedelta(seconds=200),
            finished_at=t0 + timedelta(seconds=400),
        )
    return run, primary, secondary


# The deploy page ---------------------------------------------------------------------


def test_failed_over_deploy_tells_its_story_and_draws_the_failover(
    sre_client: Client,
) -> None:
    run, _, _ = failed_over()

    html = sre_client.get(f"/deploys/{run.pk}/").content.decode()

    headline = html.split('id="run-headline"')[1].split("</div>")[0]
    assert (
        "Succeeded on prod-secondary-1 after failover from prod-primary-1" in headline
    )
    # Waited at the gate (62 s, then 3 s after the failover), never "in queue 0 s".
    assert "waited at the gate 65 s over 2 waits" in html
    assert "Waited in queue" not in html and 'id="run-queue-wait"' not in html
    chart = html.split('id="run-chart"')[1].split("</figure>")[0]
    assert chart.count('class="mark-failover"') == 1
    assert "Failover at" in chart and "the runner turned unhealthy" in chart
    assert chart.count('class="seg seg-gate"') == 2
    assert 'class="seg seg-succeeded"' in chart and 'class="seg seg-cancelled"' in chart
    assert "style=" not in chart  # the CSP allows no inline styles
    # The failover runbook is linked by its title.
    match = re.search(r'<a href="/runbooks/deploy-failed-over/">([^<]+)</a>', html)
    assert match and "deploy-failed-over" not in match.group(1)
    # Finished: Redeploy names what it redeploys; no cancel.
    assert re.search(r'id="redeploy-button"[^>]*>Redeploy main @ 0123456…<', html)
    assert 'id="cancel-button"' not in html


def test_deploy_page_query_count_does_not_grow_with_attempts(
    sre: User, django_assert_num_queries: Any
) -> None:
    client = logged_in(sre)
    client.get("/")
    small, _, _ = failed_over(attempts=2)
    # session, user, role groups, run with environment, attempts with runners,
    # events, the stopped-jobs banner.
    with django_assert_num_queries(7):
        client.get(f"/deploys/{small.pk}/")
    DeployRun.objects.all().delete()
    Environment.objects.all().delete()
    Runner.objects.all().delete()
    large, _, _ = failed_over(attempts=8)
    with django_assert_num_queries(7):
        response = client.get(f"/deploys/{large.pk}/")
    assert response.content.decode().count('class="lane"') == 1 + 8


def gating_run(gate_timeout: int = 300) -> DeployRun:
    env = make_env(
        "production",
        pool_runner("prod-primary-1", State.UNHEALTHY),
        pool_runner("prod-secondary-1", State.UNHEALTHY),
    )
    started = timezone.now() - timedelta(seconds=40)
    run = DeployRun.objects.create(
        environment=env,
        ref="main",
        state=DeployRun.State.GATING,
        created_at=started,
        gate_started_at=started,
        started_at=started,
        timeouts={"gate_timeout": gate_timeout},
    )
    event(run, Kind.GATING, started)
    event(
        run,
        Kind.GATE_WAITING,
        started + timedelta(seconds=1),
        "no healthy runner in the pool",
        detail={"considered": []},
    )
    return run


def test_gating_deploy_counts_down_with_the_timeout_recorded_at_request(
    viewer_client: Client,
) -> None:
    run = gating_run(gate_timeout=300)
    # A later change of the setting does not move this deploy's deadline.
    Environment.objects.update(gate_timeout=900)
    assert run.gate_started_at is not None
    deadline = (run.gate_started_at + timedelta(seconds=300)).strftime("%H:%M:%S")

    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()

    countdown = html.split('id="run-countdown"')[1].split("</p>")[0]
    assert "Fails at <time" in countdown and f"{deadline} UTC</time>" in countdown
    assert "unless a runner recovers" in countdown
    assert "of 300 s" in countdown
    assert "Waiting at the gate: no healthy runner in the pool" in html
    pool = html.split('id="run-pool"')[1].split("</section>")[0]
    assert re.findall(r'data-pool-runner="([^"]+)"', pool) == [
        "prod-primary-1",
        "prod-secondary-1",
    ]
    assert "unhealthy" in pool
    assert ">waiting at the gate<" in html


def test_failure_quotes_the_timeout_in_force_when_the_deploy_started(
    viewer_client: Client,
) -> None:
    env = make_env("production", pool_runner("p1", State.UNHEALTHY), gate_timeout=900)
    run = DeployRun.objects.create(
        environment=env,
        ref="main",
        state=DeployRun.State.FAILED,
        reason=DeployRun.Reason.NO_HEALTHY_RUNNER,
        message="no healthy runner in the pool within 300 s",
        finished_at=timezone.now(),
        timeouts={"gate_timeout": 300},
    )

    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()

    assert "Failed: no healthy runner within 300 s" in html
    assert "900 s" not in html.split('id="run-headline"')[1].split("</div>")[0]


def test_dispatched_until_picked_up(viewer_client: Client) -> None:
    runner = pool_runner("p1")
    env = make_env("production", runner)
    now = timezone.now()
    run = DeployRun.objects.create(
        environment=env, ref="main", state=DeployRun.State.RUNNING, started_at=now
    )
    attempt = DeployAttempt.objects.create(
        run=run, number=1, runner=runner, state="dispatched", dispatched_at=now
    )

    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()
    assert 'id="run-state">dispatched<' in html
    assert "Dispatched to p1, waiting for it to pick the job up" in html
    assert "Fails over at" in html and "unless p1 picks the job up" in html

    DeployAttempt.objects.filter(pk=attempt.pk).update(
        state="running", picked_up_at=now
    )
    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()
    assert 'id="run-state">running<' in html
    assert "Running on p1" in html


def test_request_records_the_environment_timeouts(sre_client: Client) -> None:
    make_env("production", pool_runner("p1"), gate_timeout=77, pickup_timeout=33)
    sre_client.post(
        "/deploys/new/",
        {"environment": "production", "ref": "main", "idempotency_key": "t-1"},
    )
    run = DeployRun.objects.get()
    assert run.timeouts == {
        "pickup_timeout": 33,
        "gate_timeout": 77,
        "busy_wait": 120,
        "approval_timeout": 3600,
        "signoffs_required": 0,
        "signoff_ttl": 14400,
    }
    Environment.objects.update(gate_timeout=5)
    run.refresh_from_db()
    assert run.timeout("gate_timeout") == 77


def test_redeploy_is_offered_only_on_finished_deploys_and_confirmed(
    sre_client: Client, sre: User
) -> None:
    env = make_env("production", pool_runner("p1"))
    running = DeployRun.objects.create(
        environment=env, ref="main", state=DeployRun.State.RUNNING
    )
    assert (
        'id="redeploy-button"'
        not in sre_client.get(f"/deploys/{running.pk}/").content.decode()
    )
    assert sre_client.get(f"/deploys/{running.pk}/redeploy/").status_code == 302
    done = DeployRun.objects.create(
        environment=env,
        ref="main",
        state=DeployRun.State.FAILED,
        change_ticket="C-1",
        finished_at=timezone.now(),
    )

    confirm = sre_client.get(f"/deploys/{done.pk}/redeploy/").content.decode()
    assert 'Redeploy <span class="mono">main</span> to production?' in confirm
    assert 'data-chosen="p1"' in confirm
    assert DeployRun.objects.count() == 2  # asking is not doing

    response = sre_client.post(
        f"/deploys/{done.pk}/redeploy/", {"idempotency_key": "redeploy-x"}
    )
    new = DeployRun.objects.latest("pk")
    assert response["Location"] == f"/deploys/{new.pk}/"
    assert (new.ref, new.change_ticket, new.requester) == ("main", "C-1", sre)
    assert new.sha  # the ref's commit, recorded


def test_viewer_cannot_redeploy(viewer_client: Client) -> None:
    env = make_env()
    done = DeployRun.objects.create(
        environment=env, ref="main", state=DeployRun.State.SUCCEEDED
    )
    assert viewer_client.get(f"/deploys/{done.pk}/redeploy/").status_code == 403
    assert viewer_client.post(f"/deploys/{done.pk}/redeploy/").status_code == 403


# The environment page ----------------------------------------------------------------


def test_paused_environment_shows_a_banner_and_disables_deploy_buttons(
    sre_client: Client, sre: User
) -> None:
    env = make_env("production", pool_runner("p1"))
    DeployRun.objects.create(
        environment=env,
        ref="v1",
        sha="abcdef0123456789",
        state=DeployRun.State.SUCCEEDED,
        finished_at=timezone.now(),
    )

    response = sre_client.post(
        "/deploys/environments/production/pause/", {"reason": "incident INC-42"}
    )
    assert response.status_code == 302
    html = sre_client.get("/deploys/environments/production/").content.decode()

    banner = html.split('id="env-banner"')[1].split("</div>")[0]
    assert "Deploys to production are paused" in banner
    assert "incident INC-42" in banner and "Paused by sam-sre" in banner
    assert "until an SRE resumes them" in banner
    actions = html.split('id="env-actions"')[1].split("</div>")[0]
    assert actions.count("disabled") == 3
    assert "Deploys to production are paused." in actions
    assert 'id="deploy-button"' not in html
    assert 'id="resume-button"' in html
    last_good = html.split('id="env-last-good"')[1].split("</section>")[0]
    assert "v1" in last_good and "abcdef0" in last_good
    # Empty lists take one line each.
    assert 'id="env-active">Active: none.' in html
    assert 'id="env-queued">Queued: none.' in html
    row = AuditEvent.objects.get(action="environment.pause")
    assert (row.actor_name, row.target_repr, row.detail["reason"]) == (
        "sam-sre",
        "production",
        "incident INC-42",
    )

    sre_client.post("/deploys/environments/production/resume/", {"note": "fixed"})
    env.refresh_from_db()
    assert (env.paused, env.paused_reason, env.paused_by) == (False, "", "")
    assert AuditEvent.objects.get(action="environment.resume").detail == {
        "note": "fixed",
        "paused_reason": "incident INC-42",
    }
    html = sre_client.get("/deploys/environments/production/").content.decode()
    assert 'id="env-banner"' not in html and 'id="deploy-button"' in html


def test_pause_needs_a_reason_and_an_sre(
    sre_client: Client, viewer_client: Client
) -> None:
    env = make_env()
    response = sre_client.post(
        "/deploys/environments/production/pause/", {"reason": "  "}, follow=True
    )
    assert "Not paused: give a reason" in response.content.decode()
    assert (
        viewer_client.post(
            "/deploys/environments/production/pause/", {"reason": "x"}
        ).status_code
        == 403
    )
    env.refresh_from_db()
    assert not env.paused
    assert not AuditEvent.objects.filter(action="environment.pause").exists()


def test_frozen_environment_banner_says_until_when(sre_client: Client) -> None:
    env = make_env()
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="year-end freeze",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
    )
    html = sre_client.get("/deploys/environments/production/").content.decode()
    banner = html.split('id="env-freeze-banner"')[1].split("</div>")[0]
    until = (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    assert "production is frozen" in banner and "year-end freeze" in banner
    assert "until <time" in banner and f"{until} UTC" in banner
    assert "only an admin may deploy" in html.split('id="env-actions"')[1]


def test_api_pauses_and_resumes_with_a_reason(
    sre_client: Client, viewer_client: Client
) -> None:
    make_env()
    url = "/api/v1/environments/production/"
    missing = sre_client.post(url + "pause/", {}, content_type="application/json")
    assert missing.status_code == 400 and "reason" in missing.json()
    assert (
        viewer_client.post(
            url + "pause/", {"reason": "x"}, content_type="application/json"
        ).status_code
        == 403
    )

    paused = sre_client.post(
        url + "pause/", {"reason": "db failover"}, content_type="application/json"
    )
    assert paused.status_code == 200
    body = paused.json()
    assert (body["paused"], body["paused_reason"], body["paused_by"]) == (
        True,
        "db failover",
        "sam-sre",
    )
    resumed = sre_client.post(url + "resume/", {}, content_type="application/json")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    again = sre_client.post(url + "resume/", {}, content_type="application/json")
    assert again.status_code == 409 and "not paused" in again.json()["detail"]
    assert list(
        AuditEvent.objects.filter(action__startswith="environment.p").values_list(
            "action", flat=True
        )
    ) == ["environment.pause"]
    assert AuditEvent.objects.filter(action="environment.resume").count() == 1


# The deploy form ---------------------------------------------------------------------


def test_form_has_no_default_environment(sre_client: Client) -> None:
    make_env("production", pool_runner("p1"))
    make_env("staging", pool_runner("s1"))

    html = sre_client.get("/deploys/new/").content.decode()

    assert " selected" not in html.split('name="environment"')[1].split("</select>")[0]
    assert "Choose an environment…" in html
    assert 'id="preview-choose"' in html and "data-chosen" not in html
    assert 'placeholder="the environment&#x27;s default ref"' in html
    empty = sre_client.post("/deploys/new/", {"ref": "", "idempotency_key": "k"})
    assert empty.status_code == 400
    assert "Choose the environment to deploy to." in empty.content.decode()
    assert not DeployRun.objects.exists()
    preview = sre_client.get("/deploys/new/preview/?environment=")
    assert (
        preview.status_code == 200 and 'id="preview-choose"' in preview.content.decode()
    )


def test_unknown_environment_in_the_link_is_a_visible_error(sre_client: Client) -> None:
    make_env()
    response = sre_client.get("/deploys/new/?environment=prod")
    assert response.status_code == 404
    html = response.content.decode()
    assert "There is no environment named “prod”" in html
    assert 'name="environment"' in html  # the form is still there to choose one


def test_production_asks_for_a_confirmation_naming_environment_ref_runner(
    sre_client: Client, sre: User
) -> None:
    make_env(
        "production",
        pool_runner("prod-primary-1", State.UNHEALTHY),
        pool_runner("prod-secondary-1"),
        production=True,
        default_ref="main",
    )
    data = {"environment": "production", "ref": "", "idempotency_key": "prod-1"}

    confirm = sre_client.post("/deploys/new/", data)

    assert confirm.status_code == 200
    assert not DeployRun.objects.exists()
    html = confirm.content.decode()
    assert 'Deploy <span class="mono">main</span> to production?' in html
    assert 'data-chosen="prod-secondary-1"' in html
    assert re.search(r'id="confirm-deploy"[^>]*>Deploy main to production<', html)
    assert 'name="confirmed" value="on"' in html

    done = sre_client.post("/deploys/new/", {**data, "confirmed": "on"})
    run = DeployRun.objects.get()
    assert done["Location"] == f"/deploys/{run.pk}/"
    assert (run.ref, run.requester) == ("main", sre)


def test_staging_needs_no_confirmation(sre_client: Client) -> None:
    make_env("staging", pool_runner("s1"))
    response = sre_client.post(
        "/deploys/new/",
        {"environment": "staging", "ref": "main", "idempotency_key": "st-1"},
    )
    assert response.status_code == 302
    assert DeployRun.objects.count() == 1


def test_paused_preview_promises_no_runner(sre_client: Client) -> None:
    make_env(
        "production",
        pool_runner("p1"),
        paused=True,
        paused_reason="incident INC-9",
        production=True,
    )
    html = sre_client.get(
        "/deploys/new/preview/?environment=production"
    ).content.decode()
    assert "Deploys to production are paused" in html and "INC-9" in html
    assert "goes to" not in html and "data-chosen" not in html
    assert 'class="chosen"' not in html
    # A paused production deploy is refused at once, not asked to be confirmed.
    refused = sre_client.post(
        "/deploys/new/",
        {"environment": "production", "ref": "main", "idempotency_key": "p-9"},
    )
    assert refused.status_code == 409


def test_form_query_count_does_not_grow_with_environments(
    sre: User, django_assert_num_queries: Any
) -> None:
    client = logged_in(sre)
    client.get("/")
    make_env("production", pool_runner("p1"), pool_runner("p2"))
    # session, user, role groups, environment named, its pool, freeze windows,
    # the stopped-jobs banner, the choices (counted, then listed).
    with django_assert_num_queries(9):
        client.get("/deploys/new/?environment=production")
    for n in range(10):
        make_env(f"env-{n}", pool_runner(f"r-{n}"))
    with django_assert_num_queries(9):
        client.get("/deploys/new/?environment=production")
