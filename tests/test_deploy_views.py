"""The deploys pages: the list (filters, live partial, query counts), the trigger form
(runner preview, idempotent submit, field errors, refusals, break glass), a deploy's
timeline (attempts, failovers, gate decisions, runbook, cancel, redeploy) and the
environment pages (pool health, safeguards, active and queued, query counts)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from deploys.models import (
    DeployAttempt,
    DeployEvent,
    DeployRun,
    Environment,
    FreezeWindow,
)
from runners.models import State
from tests.conftest import logged_in
from tests.factories import make_env, pool_runner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("github")]


def make_run(env: Environment, **kw: Any) -> DeployRun:
    kw.setdefault("ref", "main")
    kw.setdefault("requester_name", "sam-sre")
    return DeployRun.objects.create(environment=env, **kw)


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-run="(\d+)"', html)]


def form_key(html: str) -> str:
    match = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert match, "no idempotency key in the form"
    return match.group(1)


# Deploys list -------------------------------------------------------------------------


def test_list_shows_state_runner_and_failovers_newest_first(
    viewer_client: Client,
) -> None:
    primary, secondary = pool_runner("p1"), pool_runner("s1")
    env = make_env("production", primary, secondary)
    now = timezone.now()
    old = make_run(
        env, state=DeployRun.State.SUCCEEDED, created_at=now - timedelta(hours=1)
    )
    new = make_run(
        env,
        ref="v2",
        state=DeployRun.State.SUCCEEDED,
        started_at=now - timedelta(seconds=100),
        finished_at=now - timedelta(seconds=10),
    )
    DeployAttempt.objects.create(
        run=new, number=1, runner=primary, failover_reason="runner_unhealthy"
    )
    DeployAttempt.objects.create(run=new, number=2, runner=secondary)

    response = viewer_client.get("/deploys/")

    html = response.content.decode()
    assert row_ids(html) == [new.pk, old.pk]
    row = html[html.index(f'data-run="{new.pk}"') :].split("</tr>")[0]
    assert "s1" in row  # the runner of the latest attempt
    assert 'data-failovers="1"' in row
    assert "1 min 30 s" in row
    assert 'class="badge badge-succeeded"' in row
    assert 'hx-trigger="every 5s"' in html


def test_list_filters_by_environment_state_requester_and_ref(
    viewer_client: Client,
) -> None:
    prod, staging = make_env("production"), make_env("staging")
    a = make_run(prod, state=DeployRun.State.FAILED, requester_name="ada")
    b = make_run(staging, state=DeployRun.State.FAILED, ref="v1")
    c = make_run(prod, state=DeployRun.State.SUCCEEDED, ref="v1")

    def ids(query: str) -> list[int]:
        return sorted(row_ids(viewer_client.get(f"/deploys/?{query}").content.decode()))

    assert ids("environment=production") == sorted([a.pk, c.pk])
    assert ids("state=failed") == sorted([a.pk, b.pk])
    assert ids("requester=ada") == [a.pk]
    assert ids("ref=v1&environment=production") == [c.pk]
    labels = re.findall(
        r'<label for="id_\w+">([^<]+)</label>',
        viewer_client.get("/deploys/").content.decode(),
    )
    assert labels == [
        "Environment",
        "State",
        "Requester",
        "Ref",
        "Requested after (UTC)",
        "Requested before (UTC)",
    ]


def test_list_htmx_poll_gets_the_table_only(viewer_client: Client) -> None:
    make_run(make_env())

    response = viewer_client.get("/deploys/?state=queued", HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert 'id="deploys-live"' in html
    assert "<html" not in html
    assert 'hx-get="/deploys/?state=queued"' in html
    assert "HX-Request" in response["Vary"]


def bulk_runs(count: int) -> None:
    runners = [pool_runner(f"r{i}-{count}") for i in range(3)]
    envs = [make_env(f"env-{i}-{count}", *runners) for i in range(3)]
    for i in range(count):
        run = make_run(envs[i % 3], state=DeployRun.State.SUCCEEDED)
        DeployAttempt.objects.create(
            run=run, number=1, runner=runners[0], failover_reason="pickup_timeout"
        )
        DeployAttempt.objects.create(run=run, number=2, runner=runners[1])


@pytest.mark.parametrize("htmx", [False, True])
def test_list_query_count_does_not_grow_with_deploys(
    viewer: User, htmx: bool, django_assert_num_queries: Any
) -> None:
    client = logged_in(viewer)
    client.get("/")  # the session's first request saves it
    if htmx:
        client.defaults["HTTP_HX_REQUEST"] = "true"
    bulk_runs(5)
    # session, user, role groups, the paginator's count, the page; the full page
    # adds the stopped-jobs banner.
    expected = 5 if htmx else 6
    with django_assert_num_queries(expected):
        small = client.get("/deploys/")
    bulk_runs(70)
    with django_assert_num_queries(expected):
        large = client.get("/deploys/")

    assert len(row_ids(small.content.decode())) == 5
    assert len(row_ids(large.content.decode())) == 50


# Trigger form -------------------------------------------------------------------------


def test_form_shows_the_runner_chosen_now_and_why_the_primary_is_passed_over(
    sre_client: Client, sre: User
) -> None:
    primary = pool_runner("p1", State.UNHEALTHY)
    drained = pool_runner("p2")
    drained.drain(sre, "kernel upgrade")
    make_env("production", primary, drained, pool_runner("s1"), default_ref="release")

    html = sre_client.get("/deploys/new/?environment=production").content.decode()

    assert 'data-chosen="s1"' in html
    assert "passed over: unhealthy (heartbeat stale)" in html
    assert "passed over: drained by sam-sre: kernel upgrade" in html
    # The ref box is empty, the environment's default ref its placeholder.
    assert 'placeholder="release"' in html
    assert 'value="release"' not in html
    assert 'hx-get="/deploys/new/preview/"' in html


def test_preview_follows_the_environment_picked(sre_client: Client) -> None:
    make_env("production", pool_runner("p1"))
    make_env("staging", pool_runner("st1", State.UNHEALTHY), pool_runner("st2"))

    html = sre_client.get("/deploys/new/preview/?environment=staging").content.decode()

    assert 'id="runner-preview"' in html
    assert 'data-chosen="st2"' in html
    assert "p1" not in html
    assert sre_client.get("/deploys/new/preview/?environment=nope").status_code == 404


def test_submitting_the_same_form_twice_gives_one_deploy(
    sre_client: Client, sre: User
) -> None:
    env = make_env("production", pool_runner("p1"))
    key = form_key(sre_client.get("/deploys/new/").content.decode())
    data = {"environment": "production", "ref": "v1.2", "idempotency_key": key}

    first = sre_client.post("/deploys/new/", data)
    second = sre_client.post("/deploys/new/", data)

    run = DeployRun.objects.get()
    assert (run.environment, run.ref, run.requester) == (env, "v1.2", sre)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/deploys/{run.pk}/"


def test_each_drawn_form_has_its_own_key(sre_client: Client) -> None:
    make_env()
    first = form_key(sre_client.get("/deploys/new/").content.decode())
    second = form_key(sre_client.get("/deploys/new/").content.decode())
    assert first != second


def test_empty_ref_deploys_the_default_ref(sre_client: Client) -> None:
    make_env("production", default_ref="release")
    sre_client.post(
        "/deploys/new/",
        {"environment": "production", "ref": "", "idempotency_key": "k-1"},
    )
    assert DeployRun.objects.get().ref == "release"


def test_bad_ref_is_reported_next_to_the_ref_field(sre_client: Client) -> None:
    make_env()

    response = sre_client.post(
        "/deploys/new/",
        {"environment": "production", "ref": "bad..ref", "idempotency_key": "k-2"},
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "ref": ["not a valid git branch, tag or commit name"]
    }
    assert not DeployRun.objects.exists()


def test_change_ticket_pattern_is_enforced_on_the_field(sre_client: Client) -> None:
    make_env(change_ticket_pattern=r"^INFRA-\d+$")
    data = {"environment": "production", "ref": "main", "idempotency_key": "k-3"}

    refused = sre_client.post("/deploys/new/", {**data, "change_ticket": "oops"})
    accepted = sre_client.post("/deploys/new/", {**data, "change_ticket": "INFRA-7"})

    assert refused.status_code == 400
    assert list(refused.context["form"].errors) == ["change_ticket"]
    assert accepted.status_code == 302
    assert DeployRun.objects.get().change_ticket == "INFRA-7"


def test_paused_environment_refusal_is_shown(sre_client: Client) -> None:
    make_env(paused=True, paused_reason="incident INC-9")

    response = sre_client.post(
        "/deploys/new/",
        {"environment": "production", "ref": "main", "idempotency_key": "k-4"},
    )

    assert response.status_code == 409
    assert response.context["refusal"] == (
        "deploys to this environment are paused: incident INC-9"
    )
    assert 'id="refusal"' in response.content.decode()
    assert not DeployRun.objects.exists()


def freeze(env: Environment) -> None:
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="year-end freeze",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )


def test_freeze_refuses_an_sre_even_with_a_reason(sre_client: Client) -> None:
    freeze(make_env())
    data = {"environment": "production", "ref": "main", "idempotency_key": "k-5"}

    plain = sre_client.post("/deploys/new/", data)
    glass = sre_client.post("/deploys/new/", {**data, "break_glass_reason": "hotfix"})

    assert plain.status_code == 409
    assert "year-end freeze" in plain.context["refusal"]
    assert glass.status_code == 403
    assert glass.context["form"].errors == {
        "break_glass_reason": ["only admins may deploy during a freeze"]
    }
    assert not DeployRun.objects.exists()
    # The break-glass field is only offered to admins.
    assert 'name="break_glass_reason"' not in plain.content.decode()


def test_admin_breaks_glass_with_a_reason(admin_user: User) -> None:
    client = logged_in(admin_user)
    freeze(make_env())

    form = client.get("/deploys/new/?environment=production").content.decode()
    response = client.post(
        "/deploys/new/",
        {
            "environment": "production",
            "ref": "main",
            "idempotency_key": form_key(form),
            "break_glass_reason": "security hotfix",
        },
    )

    assert 'name="break_glass_reason"' in form
    assert "is frozen (year-end freeze)" in form
    assert response.status_code == 302
    run = DeployRun.objects.get()
    assert run.events.filter(kind=DeployEvent.Kind.BREAK_GLASS).exists()


def test_viewer_cannot_request_a_deploy(viewer_client: Client) -> None:
    make_env()
    response = viewer_client.post(
        "/deploys/new/",
        {"environment": "production", "ref": "main", "idempotency_key": "k-6"},
    )
    assert response.status_code == 403
    assert not DeployRun.objects.exists()


# Deploy detail ------------------------------------------------------------------------


def failed_over_run() -> DeployRun:
    primary, secondary = pool_runner("p1", State.UNHEALTHY), pool_runner("s1")
    env = make_env("production", primary, secondary)
    now = timezone.now()
    run = make_run(
        env,
        state=DeployRun.State.FAILED,
        reason=DeployRun.Reason.DEPLOY_FAILED,
        message="step 'migrate' failed",
        created_at=now - timedelta(seconds=200),
        started_at=now - timedelta(seconds=190),
        finished_at=now,
    )
    first = DeployAttempt.objects.create(
        run=run,
        number=1,
        runner=primary,
        state=DeployAttempt.State.CANCELLED,
        failover_reason=DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
        github_run_id=4242,
        dispatched_at=now - timedelta(seconds=180),
        picked_up_at=now - timedelta(seconds=170),
        finished_at=now - timedelta(seconds=120),
    )
    DeployAttempt.objects.create(
        run=run,
        number=2,
        runner=secondary,
        state=DeployAttempt.State.FAILED,
        html_url="https://github.com/acme/deploy/actions/runs/4343",
        github_run_id=4343,
        dispatched_at=now - timedelta(seconds=100),
        picked_up_at=now - timedelta(seconds=95),
        finished_at=now - timedelta(seconds=5),
    )
    DeployEvent.objects.create(
        run=run,
        attempt=first,
        kind=DeployEvent.Kind.FAILOVER,
        message="p1 turned unhealthy",
        detail={"reason": "runner_unhealthy", "runner": "p1"},
    )
    DeployEvent.objects.create(
        run=run,
        kind=DeployEvent.Kind.GATE_PASSED,
        message="attempt 2 goes to s1",
        detail={
            "considered": [
                {
                    "runner": "p1",
                    "position": 0,
                    "state": "unhealthy",
                    "passed_over": ["unhealthy (heartbeat stale)"],
                },
                {
                    "runner": "s1",
                    "position": 1,
                    "state": "healthy",
                    "passed_over": [],
                    "chosen": True,
                },
            ]
        },
    )
    return run


def test_detail_shows_attempts_failover_gate_decisions_and_runbook(
    viewer_client: Client,
) -> None:
    run = failed_over_run()

    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()

    first = html[html.index('data-attempt="1"') :].split("</tr>")[0]
    second = html[html.index('data-attempt="2"') :].split("</tr>")[0]
    assert "p1" in first and "the runner turned unhealthy" in first
    assert "/runbooks/deploy-failed-over/" in first
    assert "https://github.com/acme/deploy/actions/runs/4242" in first
    assert "10 s" in first  # time to pickup
    assert (
        "s1" in second and "https://github.com/acme/deploy/actions/runs/4343" in second
    )
    assert "1 min 30 s" in second  # picked up to finished
    assert "p1 (primary, unhealthy): passed over: unhealthy (heartbeat stale)" in html
    assert "s1 (secondary #1, healthy): chosen" in html
    assert 'href="/runbooks/deploy-failed/"' in html
    assert "step &#x27;migrate&#x27; failed" in html
    # Final: no polling, no cancel; the redeploy button stays.
    assert "hx-trigger" not in html.split('id="run-live"')[1].split(">")[0]
    assert 'id="cancel-button"' not in html


def test_detail_polls_while_the_deploy_is_not_final(sre_client: Client) -> None:
    run = make_run(make_env(), state=DeployRun.State.GATING)
    DeployEvent.objects.create(
        run=run,
        kind=DeployEvent.Kind.GATE_WAITING,
        message="no healthy runner in the pool",
        detail={"considered": []},
    )

    response = sre_client.get(f"/deploys/{run.pk}/", HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert "<html" not in html
    assert f'hx-get="/deploys/{run.pk}/" hx-trigger="every 2s"' in html
    assert 'id="cancel-button"' in html
    assert 'href="/runbooks/deploy-waiting-for-runner/"' in html


def test_viewer_sees_no_buttons(viewer_client: Client) -> None:
    run = make_run(make_env(), state=DeployRun.State.RUNNING)
    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()
    assert 'id="cancel-button"' not in html
    assert 'id="redeploy-button"' not in html


def test_sre_cancels_a_deploy(sre_client: Client) -> None:
    run = make_run(make_env())

    response = sre_client.post(f"/deploys/{run.pk}/cancel/")

    run.refresh_from_db()
    assert response["Location"] == f"/deploys/{run.pk}/"
    assert (run.state, run.reason) == (DeployRun.State.CANCELLED, "cancelled")
    assert run.events.filter(kind=DeployEvent.Kind.CANCELLED).count() == 1


def test_viewer_cannot_cancel(viewer_client: Client) -> None:
    run = make_run(make_env())
    assert viewer_client.post(f"/deploys/{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.state == DeployRun.State.QUEUED


def test_redeploy_last_good_repeats_the_last_succeeded_ref(
    sre_client: Client, sre: User
) -> None:
    env = make_env()
    now = timezone.now()
    make_run(
        env,
        ref="v1",
        state=DeployRun.State.SUCCEEDED,
        finished_at=now - timedelta(hours=2),
    )
    make_run(
        env,
        ref="v2",
        state=DeployRun.State.SUCCEEDED,
        finished_at=now - timedelta(hours=1),
    )
    failed = make_run(env, ref="v3", state=DeployRun.State.FAILED, finished_at=now)
    data = {"idempotency_key": "redeploy-1", "back": f"/deploys/{failed.pk}/"}

    first = sre_client.post(
        "/deploys/environments/production/redeploy-last-good/", data
    )
    again = sre_client.post(
        "/deploys/environments/production/redeploy-last-good/", data
    )

    new = DeployRun.objects.get(state=DeployRun.State.QUEUED)
    assert (new.ref, new.requester) == ("v2", sre)
    assert first["Location"] == again["Location"] == f"/deploys/{new.pk}/"


def test_redeploy_without_a_good_deploy_says_why(sre_client: Client) -> None:
    failed = make_run(make_env(), state=DeployRun.State.FAILED)

    response = sre_client.post(
        "/deploys/environments/production/redeploy-last-good/",
        {"idempotency_key": "r-2", "back": f"/deploys/{failed.pk}/"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == f"/deploys/{failed.pk}/"
    assert "production has no succeeded deploy to repeat" in response.content.decode()
    assert DeployRun.objects.count() == 1


def test_redeploy_back_link_never_leaves_the_site(sre_client: Client) -> None:
    make_env()
    response = sre_client.post(
        "/deploys/environments/production/redeploy-last-good/",
        {"idempotency_key": "r-3", "back": "//evil.example/"},
    )
    assert response["Location"] == "/deploys/environments/production/"


# Environments -------------------------------------------------------------------------


def test_environment_page_shows_pool_health_safeguards_active_and_queued(
    viewer_client: Client, sre: User
) -> None:
    primary = pool_runner("p1", State.UNHEALTHY)
    secondary = pool_runner("s1")
    third = pool_runner("s2")
    third.drain(sre, "disk swap")
    env = make_env(
        "production", primary, secondary, third, change_ticket_pattern="^C-\\d+$"
    )
    freeze(env)
    active = make_run(env, state=DeployRun.State.RUNNING)
    queued = make_run(env, ref="v9")
    done = make_run(env, state=DeployRun.State.SUCCEEDED)

    html = viewer_client.get("/deploys/environments/production/").content.decode()

    pool = re.findall(r'data-pool-runner="([^"]+)"', html)
    assert pool == ["p1", "s1", "s2"]
    assert "passed over: unhealthy (heartbeat stale)" in html
    assert "next deploy goes here" in html
    assert "drained by sam-sre: disk swap" in html
    assert "year-end freeze" in html
    active_table = html.split('id="env-active"')[1].split("</table>")[0]
    queued_table = html.split('id="env-queued"')[1].split("</table>")[0]
    recent_table = html.split('id="env-recent"')[1].split("</table>")[0]
    assert row_ids(active_table) == [active.pk]
    assert row_ids(queued_table) == [queued.pk]
    assert row_ids(recent_table) == [done.pk]
    assert 'hx-trigger="every 5s"' in html


@time_machine.travel(datetime(2026, 12, 2, 12, 0, tzinfo=UTC), tick=False)
def test_environment_page_lists_freeze_windows_and_when_the_freeze_ends(
    viewer: User,
) -> None:
    env = make_env()
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="incident review",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
    )
    FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.WEEKLY,
        reason="weekend",
        weekday=4,
        start_time=dt_time(22, 0),
        duration_minutes=56 * 60,
    )

    html = logged_in(viewer).get("/deploys/environments/production/").content.decode()

    freeze_line = html.split('id="env-freeze"')[1].split("</dd>")[0]
    assert "incident review" in freeze_line
    assert ">2026-12-02 14:00 UTC</time>" in freeze_line
    listed = html.split('id="env-freeze-windows"')[1].split("</dd>")[0]
    assert re.findall(r'data-kind="(\w+)">(.*?)</div>', listed) == [
        (
            "one_off",
            "one-off, 2026-12-02 11:00 – 2026-12-02 14:00 UTC: incident review "
            '<span class="badge badge-warning">in force now</span>',
        ),
        ("weekly", "weekly, Fridays from 22:00 UTC for 56 h: weekend"),
    ]


def test_frozen_deploy_links_its_runbook(viewer_client: Client) -> None:
    run = make_run(
        make_env(),
        state=DeployRun.State.FAILED,
        reason=DeployRun.Reason.FROZEN,
        message="production froze before the deploy started: year-end freeze",
    )

    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()

    assert "the environment froze before the deploy started" in html
    assert 'href="/runbooks/deploy-frozen/"' in html


def test_environment_page_htmx_poll_gets_the_live_part(viewer_client: Client) -> None:
    make_env()
    html = viewer_client.get(
        "/deploys/environments/production/", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="environment-live"' in html and "<html" not in html


def test_environment_index_shows_paused_frozen_and_counts(
    viewer_client: Client,
) -> None:
    prod = make_env("production", pool_runner("p1"))
    make_env("staging", paused=True)
    freeze(prod)
    make_run(prod, state=DeployRun.State.RUNNING)
    make_run(prod)
    make_run(prod)

    html = viewer_client.get("/deploys/environments/").content.decode()

    prod_row = html.split('data-environment="production"')[1].split("</tr>")[0]
    staging_row = html.split('data-environment="staging"')[1].split("</tr>")[0]
    assert "frozen" in prod_row and "paused" not in prod_row
    assert re.findall(r"<td>(\d+)</td>", prod_row) == ["1", "2"]
    assert "paused" in staging_row


def bulk_envs(count: int, tag: str) -> None:
    for i in range(count):
        env = make_env(
            f"env-{tag}-{i}", pool_runner(f"a-{tag}-{i}"), pool_runner(f"b-{tag}-{i}")
        )
        freeze(env)
        make_run(env)


def test_environment_index_query_count_does_not_grow(
    viewer: User, django_assert_num_queries: Any
) -> None:
    client = logged_in(viewer)
    client.get("/")
    bulk_envs(2, "small")
    # session, user, role groups, environments, pools with runners, freeze windows,
    # the stopped-jobs banner.
    with django_assert_num_queries(7):
        small = client.get("/deploys/environments/")
    bulk_envs(20, "large")
    with django_assert_num_queries(7):
        large = client.get("/deploys/environments/")

    assert small.content.decode().count("data-environment=") == 2
    assert large.content.decode().count("data-environment=") == 22


def test_environment_page_query_count_does_not_grow_with_deploys(
    viewer: User, django_assert_num_queries: Any
) -> None:
    client = logged_in(viewer)
    client.get("/")
    env = make_env("production", pool_runner("p1"), pool_runner("s1"))
    for _ in range(3):
        make_run(env, state=DeployRun.State.SUCCEEDED)
    # session, user, role groups, environment, unfinished runs, recent runs,
    # freeze windows, pool with runners, the stopped-jobs banner, deployed commits,
    # the last good deploy, the runs started outside the control plane and how many
    # of them are unanswered, and the deploy outcomes (the window's deploys with
    # their commit dates, their commits deployed before it, the rollbacks).
    with django_assert_num_queries(16):
        client.get("/deploys/environments/production/")
    for _ in range(40):
        make_run(env, state=DeployRun.State.SUCCEEDED)
    make_run(env)
    for _ in range(3):
        freeze(env)
    with django_assert_num_queries(16):
        response = client.get("/deploys/environments/production/")
    assert len(response.context["recent"]) == 20


def test_unknown_environment_and_deploy_are_404(viewer_client: Client) -> None:
    assert viewer_client.get("/deploys/environments/nope/").status_code == 404
    assert viewer_client.get("/deploys/999/").status_code == 404
