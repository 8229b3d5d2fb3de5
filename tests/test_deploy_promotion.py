"""Promotion through the simulator over HTTP: production takes only commits that
succeeded in staging within the period (400 ``not_promoted`` naming staging and
offering the deploy there), redeploys and rollbacks of commits it ran before pass,
the gate applies a rule set while a deploy waited (``not_promoted``), a wait in the
queue never ages a commit out, and an admin may break glass."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.models import AuditEvent
from controlplane.notifications import Severity
from deploys import rules
from deploys.models import DeployRun, Environment, FreezeWindow
from deploys.notify import from_deploy_event
from deploys.redeploy import redeploy_last_good, rollback
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.conftest import logged_in
from tests.deploying import Clock, drive, final, simulated_env

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=16,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]

DEPLOYS = "/api/v1/deploys/"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pair(sim: Simulator, **rule: Any) -> tuple[Environment, Environment]:
    """Staging, and production promoting from it (``rule`` overrides)."""
    staging = simulated_env(sim, ("staging-1",), name="staging")
    options: dict[str, Any] = {"promote_from": staging, **rule}
    return staging, simulated_env(sim, **options)


def succeed(env: Environment, user: User, clock: Clock, **kw: Any) -> DeployRun:
    run = drive(request_deploy(user, env, **kw).run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED, run.message
    return run


def age(run: DeployRun, hours: float) -> None:
    """As if ``run`` had finished ``hours`` ago."""
    when = timezone.now() - timedelta(hours=hours)
    DeployRun.objects.filter(pk=run.pk).update(finished_at=when)


def ask(user: User, **body: str) -> Any:
    return logged_in(user).post(
        DEPLOYS, {"environment": "production", **body}, content_type="application/json"
    )


def test_a_commit_not_deployed_to_staging_is_refused_naming_staging_and_offering_it(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    staging, _ = pair(sim)
    sha = sim.push("main")
    response = ask(sre, ref="main")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "not_promoted"
    assert body["field"] == "sha"
    assert body["detail"] == (
        f"{sha[:12]} (main) is not promoted to production: production deploys only "
        "commits that succeeded in staging within 7 days, and it has not succeeded "
        f"in staging. Deploy it to staging first (environment staging, ref main, "
        f"sha {sha}). An admin may break glass with a reason."
    )
    assert body["rules"] == [
        {
            "code": "not_promoted",
            "rule": "promote_from",
            "promote": {
                "environment": "staging",
                "ref": "main",
                "sha": sha,
                "form_url": f"/deploys/new/?environment=staging&ref=main&sha={sha}",
            },
        }
    ]
    assert not DeployRun.objects.exists()
    # The offer, taken through the API: the same ref and commit to staging.
    offer = body["rules"][0]["promote"]
    taken = ask(sre, environment=offer["environment"], ref="main", sha=offer["sha"])
    assert taken.status_code == 202, taken.content
    drive(DeployRun.objects.get(), final, clock)
    promoted = ask(sre, ref="main")
    assert promoted.status_code == 202, promoted.content
    assert promoted.json()["sha"] == sha


def test_a_failed_or_stale_staging_deploy_does_not_promote(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    staging, production = pair(sim, promotion_period_hours=48)
    sha = sim.push("main")
    sim.set_outcome("failure")
    failed = drive(request_deploy(sre, staging, "main").run, final, clock)
    assert failed.state == DeployRun.State.FAILED
    assert ask(sre, ref="main").json()["code"] == "not_promoted"
    sim.set_outcome("success")
    good = succeed(staging, sre, clock, ref="main")
    age(good, 49)
    refused = ask(sre, ref="main")
    assert refused.status_code == 400
    assert (
        "within 2 days, and it last succeeded in staging at "
        in (refused.json()["detail"])
    )
    assert "more than 2 days before" in refused.json()["detail"]
    age(good, 47)
    assert ask(sre, ref="main").json()["sha"] == sha


def test_redeploy_and_rollback_of_commits_production_ran_pass_the_rule(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    staging, production = pair(sim)
    old_sha = sim.sha_of("main")
    old_stage = succeed(staging, sre, clock, ref="main")
    old = succeed(production, sre, clock, ref="main")
    new_sha = sim.push("main")
    new_stage = succeed(staging, sre, clock, ref="main")
    succeed(production, sre, clock, ref="main")
    # Weeks later: staging's successes are far outside the period.
    age(old_stage, 24 * 30)
    age(new_stage, 24 * 30)
    back = rollback(sre, production).run
    assert (back.sha, back.state) == (old_sha, DeployRun.State.QUEUED)
    assert drive(back, final, clock).state == DeployRun.State.SUCCEEDED
    again = redeploy_last_good(sre, production).run
    assert again.sha == old_sha != new_sha
    assert old.sha == old_sha
    # A commit production never ran still needs staging.
    sim.push("main")
    assert ask(sre, ref="main").json()["code"] == "not_promoted"


def test_the_gate_applies_a_rule_set_while_the_deploy_waited(
    sim: Simulator, sre: User, admin_user: User, clock: Clock
) -> None:
    staging = simulated_env(sim, ("staging-1",), name="staging")
    production = simulated_env(sim)
    first = request_deploy(sre, production, "main").run
    drive(first, lambda r: r.state == DeployRun.State.RUNNING, clock)
    sha = sim.push("main")
    waiting = request_deploy(sre, production, "main").run  # queued behind it
    changed = logged_in(admin_user).patch(
        "/api/v1/environments/production/",
        {"promote_from": "staging"},
        content_type="application/json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["promote_from"] == "staging"
    assert drive(first, final, clock).state == DeployRun.State.SUCCEEDED
    run = drive(waiting, final, clock)
    assert (run.state, run.reason) == (DeployRun.State.FAILED, "not_promoted")
    assert run.runbook_slug == "deploy-not-promoted"
    assert not run.attempts.exists()
    failed = run.events.get(kind="failed")
    assert failed.detail["promote"]["environment"] == staging.name
    assert failed.detail["promote"]["sha"] == sha
    assert f"{sha[:12]} (main) is not promoted to production" in run.message
    # The policy working: the notification is a warning linking the runbook.
    note = from_deploy_event(failed)
    assert note is not None
    assert note.severity == Severity.WARNING
    assert note.runbook.endswith("/runbooks/deploy-not-promoted/")


def test_a_wait_in_the_queue_does_not_age_a_commit_out(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    staging, production = pair(sim, promotion_period_hours=2)
    good = succeed(staging, sre, clock, ref="main")
    age(good, 1.5)
    run = request_deploy(sre, production, "main").run
    clock.jump(3 * 3600)  # past the period by the time it reaches the gate
    assert drive(run, final, clock).state == DeployRun.State.SUCCEEDED


def test_an_admin_breaks_glass_past_promotion_and_a_later_freeze_still_holds_it(
    sim: Simulator, admin_user: User, sre: User, clock: Clock
) -> None:
    pair(sim)
    by_sre = ask(sre, ref="main", break_glass_reason="INC-7")
    assert by_sre.status_code == 403
    by_admin = ask(admin_user, ref="main", break_glass_reason="INC-7: hotfix")
    assert by_admin.status_code == 202, by_admin.content
    run = DeployRun.objects.get()
    glass = run.events.get(kind="break_glass")
    assert glass.detail == {"rules": ["not_promoted"]}
    assert (
        glass.message
        == f"promotion rule broken by {admin_user.username}: INC-7: hotfix"
    )
    assert AuditEvent.objects.get(action="deploy.break_glass").detail["rules"] == [
        "not_promoted"
    ]
    # The glass was broken past the rule, not past a freeze that begins later.
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=run.environment,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="release freeze",
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
    )
    assert drive(run, final, clock).reason == "frozen"


def test_an_admin_run_past_the_rule_passes_the_gate(
    sim: Simulator, admin_user: User, clock: Clock
) -> None:
    pair(sim)
    run = request_deploy(admin_user, "production", "main", break_glass_reason="INC-8")
    assert drive(run.run, final, clock).state == DeployRun.State.SUCCEEDED


def test_check_says_every_rule_in_two_queries_and_no_call_when_none_could_match(
    sim: Simulator, django_assert_num_queries: Any
) -> None:
    _, production = pair(sim, allowed_refs="refs/tags/v*")
    env = Environment.objects.get(pk=production.pk)  # nothing cached
    sha = sim.sha_of("main")
    with django_assert_num_queries(2):  # the source environment, the successes
        refusals = rules.check(env, "main", sha, timezone.now())
    assert [r.code for r in refusals] == ["ref_not_allowed", "not_promoted"]
    assert [r.field for r in refusals] == ["ref", "sha"]
    open_env = Environment.objects.get(name="staging")
    with django_assert_num_queries(0):
        assert rules.check(open_env, "main", sha, timezone.now()) == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("production", "an environment cannot promote from itself"),
        ("elsewhere", "elsewhere deploys acme/other, not acme/deploy"),
        ("staging", "staging promotes (through its chain) from this environment"),
        ("nowhere", "Object with name=nowhere does not exist."),
    ],
)
def test_a_bad_promotion_source_is_a_400_naming_the_field(
    admin_user: User, source: str, problem: str
) -> None:
    production = Environment.objects.create(name="production", repository="acme/deploy")
    Environment.objects.create(
        name="staging", repository="acme/deploy", promote_from=production
    )
    Environment.objects.create(name="elsewhere", repository="acme/other")
    response = logged_in(admin_user).patch(
        "/api/v1/environments/production/",
        {"promote_from": source},
        content_type="application/json",
    )
    assert response.status_code == 400
    [message] = response.json()["promote_from"]
    assert message.startswith(problem)
    assert Environment.objects.get(name="production").promote_from is None


def test_the_period_is_bounded(admin_user: User) -> None:
    Environment.objects.create(name="production", repository="acme/deploy")
    response = logged_in(admin_user).patch(
        "/api/v1/environments/production/",
        {"promotion_period_hours": 0},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "promotion_period_hours" in response.json()


def test_a_rollback_still_answers_to_the_allowed_refs_rule(
    sim: Simulator, sre: User, admin_user: User, clock: Clock
) -> None:
    production = simulated_env(sim)
    succeed(production, sre, clock, ref="main")
    sim.push("main")
    succeed(production, sre, clock, ref="main")
    Environment.objects.filter(pk=production.pk).update(allowed_refs="refs/tags/v*")
    refused = logged_in(sre).post(
        f"{DEPLOYS}rollback/",
        {"environment": "production"},
        content_type="application/json",
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "ref_not_allowed"
    glass = logged_in(admin_user).post(
        f"{DEPLOYS}rollback/",
        {"environment": "production", "break_glass_reason": "INC-3: bad release"},
        content_type="application/json",
    )
    assert glass.status_code == 202, glass.content


def test_check_without_a_commit_is_never_promoted(sim: Simulator) -> None:
    _, production = pair(sim)
    [refusal] = rules.check(production, "main", "", timezone.now())
    assert refusal.code == "not_promoted"
    assert refusal.message == (
        "production deploys only commits that succeeded in staging within 7 days, "
        "and no commit was given."
    )
    assert refusal.detail() == {"code": "not_promoted", "rule": "promote_from"}
