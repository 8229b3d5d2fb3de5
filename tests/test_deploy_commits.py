"""Exact commits end to end through the simulator over HTTP: a request records the
SHA its ref stands for, the dispatch passes it, the engine checks the run's head_sha,
"redeploy last good" and rollback ship recorded SHAs, and "Deployed now" says what
each environment runs."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.github import JobInfo, StepInfo
from controlplane.models import AuditEvent
from deploys.engine.commits import check_head_sha
from deploys.models import DeployAttempt, DeployRun, Environment
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import Runner
from tests.conftest import logged_in
from tests.deploying import (
    PRIMARY,
    REPO,
    Clock,
    drive,
    final,
    github_id,
    kinds,
    simulated_env,
)
from tests.factories import make_env, pool_runner

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=13,
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


def deployed(
    sim: Simulator, env: Environment, sre: User, clock: Clock, ref: str = "main"
) -> DeployRun:
    run = drive(request_deploy(sre, env, ref).run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED, kinds(run)
    return run


def test_a_request_records_the_refs_sha_and_the_dispatch_passes_it(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    simulated_env(sim)
    sha = sim.push("main")
    response = logged_in(sre).post(
        DEPLOYS, {"environment": "production"}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["sha"] == sha
    run = drive(DeployRun.objects.get(), final, clock)
    assert (run.state, run.sha, run.ref) == (DeployRun.State.SUCCEEDED, sha, "main")
    dispatched = sim.state.get_run(REPO, github_id(run))
    assert dispatched.inputs["sha"] == sha
    assert dispatched.head_sha == sha
    assert "head_moved" not in kinds(run)
    audit = AuditEvent.objects.get(action="deploy.request")
    assert audit.detail["sha"] == sha


def test_an_unknown_ref_is_a_400_naming_it_and_writes_nothing(
    sim: Simulator, sre: User
) -> None:
    simulated_env(sim)
    response = logged_in(sre).post(
        DEPLOYS,
        {"environment": "production", "ref": "no-such-branch"},
        content_type="application/json",
        headers={"Idempotency-Key": "k-unknown"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "ref": ["'no-such-branch' is not a branch, tag or commit of acme/deploy"]
    }
    assert not DeployRun.objects.exists()
    # Only the refusal is recorded, as every refused request is.
    [refused] = AuditEvent.objects.filter(action="deploy.request")
    assert refused.outcome == AuditEvent.Outcome.DENIED
    assert refused.detail["ref"] == "no-such-branch"
    # The key was released: once the branch exists, the same key is accepted.
    sim.push("no-such-branch")
    again = logged_in(sre).post(
        DEPLOYS,
        {"environment": "production", "ref": "no-such-branch"},
        content_type="application/json",
        headers={"Idempotency-Key": "k-unknown"},
    )
    assert again.status_code == 202
    assert again.json()["sha"] == sim.sha_of("no-such-branch")


def test_github_down_is_a_503_with_retry_after_and_writes_nothing(
    sim: Simulator, sre: User
) -> None:
    simulated_env(sim)
    sim.set_faults(error_rate=1.0)
    response = logged_in(sre).post(
        DEPLOYS, {"environment": "production"}, content_type="application/json"
    )
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "github_unavailable"
    assert "resolving 'main'" in body["detail"]
    assert "nothing was created" in body["detail"]
    assert response["Retry-After"] == "30"
    assert not DeployRun.objects.exists()


def test_a_sha_as_ref_or_a_malformed_sha_is_refused(sim: Simulator, sre: User) -> None:
    simulated_env(sim)
    sha = sim.sha_of("main")
    client = logged_in(sre)
    as_ref = client.post(
        DEPLOYS,
        {"environment": "production", "ref": sha},
        content_type="application/json",
    )
    assert as_ref.status_code == 400
    assert "give the branch or tag it is on as ref" in as_ref.json()["ref"][0]
    short = client.post(
        DEPLOYS,
        {"environment": "production", "sha": sha[:12]},
        content_type="application/json",
    )
    assert short.status_code == 400
    assert short.json()["sha"] == ["a full 40-character lowercase hexadecimal SHA"]
    unknown = client.post(
        DEPLOYS,
        {"environment": "production", "sha": "0" * 40},
        content_type="application/json",
    )
    assert unknown.status_code == 400
    assert (
        "'" + "0" * 40 + "' is not a branch, tag or commit" in unknown.json()["sha"][0]
    )
    assert not DeployRun.objects.exists()


def test_a_push_between_request_and_dispatch_still_deploys_the_requested_sha(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    env = simulated_env(sim)
    requested = request_deploy(sre, env, "main").run
    moved = sim.push("main")  # lands before the dispatch
    run = drive(requested, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    dispatched = sim.state.get_run(REPO, github_id(run))
    assert dispatched.head_sha == moved != run.sha
    assert dispatched.inputs["sha"] == run.sha
    event = run.events.get(kind="head_moved")
    assert event.detail == {"head_sha": moved, "sha": run.sha}


def test_a_sha_no_longer_on_the_ref_fails_wrong_sha_at_checkout(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    env = simulated_env(sim)
    elsewhere = sim.push("experiment")
    run = request_deploy(sre, env, "main", sha=elsewhere).run
    run = drive(run, final, clock)
    assert (run.state, run.reason) == (DeployRun.State.FAILED, "wrong_sha")
    assert f"{elsewhere[:12]} is not on main" in run.message
    assert run.runbook_slug == "deploy-wrong-sha"
    assert run.attempts.count() == 1  # never failed over: another runner fails alike


def job(head_sha: str, steps: tuple[StepInfo, ...], **kw: Any) -> JobInfo:
    options: dict[str, Any] = {
        "id": 1,
        "run_id": 1,
        "name": "deploy",
        "status": "completed",
        "conclusion": "success",
        "runner_id": 1,
        "runner_name": PRIMARY,
        "labels": ("self-hosted", PRIMARY),
        "html_url": None,
        "started_at": None,
        "completed_at": None,
        "steps": steps,
        "head_sha": head_sha,
    }
    options.update(kw)
    return JobInfo(**options)


def test_a_workflow_that_ignores_the_sha_input_fails_wrong_sha(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main").run
    attempt = DeployAttempt.objects.create(
        run=run, number=1, runner=Runner.objects.get(name=PRIMARY)
    )
    DeployRun.objects.filter(pk=run.pk).update(state=DeployRun.State.RUNNING)
    run.refresh_from_db()
    other = "f" * 40
    steps = (StepInfo("Set up job", 1, "completed", "success"),)
    # Still running without a checkout step: nothing to judge yet.
    assert (
        check_head_sha(run, attempt, job(other, steps, status="in_progress"), clock())
        is None
    )
    assert check_head_sha(run, attempt, job(other, steps), clock()) is True
    run.refresh_from_db()
    assert (run.state, run.reason) == (DeployRun.State.FAILED, "wrong_sha")
    assert "the workflow must check out the sha input" in run.message
    # The same SHA, or a run without a recorded SHA, is never judged.
    assert check_head_sha(run, attempt, job(run.sha, steps), clock()) is None


def test_redeploy_last_good_ships_the_recorded_sha_not_the_branch_tip(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    env = simulated_env(sim)
    good = deployed(sim, env, sre, clock)
    sim.push("main")
    response = logged_in(sre).post(
        f"{DEPLOYS}redeploy-last-good/",
        {"environment": "production"},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    again = drive(DeployRun.objects.get(pk=response.json()["id"]), final, clock)
    assert (again.state, again.ref, again.sha) == ("succeeded", "main", good.sha)
    assert sim.state.get_run(REPO, github_id(again)).inputs["sha"] == good.sha


def test_rollback_redeploys_the_previous_commit_and_audits_both_shas(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    env = simulated_env(sim)
    first = deployed(sim, env, sre, clock)
    sim.push("main")
    second = deployed(sim, env, sre, clock)
    deployed(sim, env, sre, clock)  # the same commit again: not a rollback target
    response = logged_in(sre).post(
        f"{DEPLOYS}rollback/",
        {"environment": "production"},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    rolled = drive(DeployRun.objects.get(pk=response.json()["id"]), final, clock)
    assert (rolled.state, rolled.sha) == ("succeeded", first.sha)
    assert sim.state.get_run(REPO, github_id(rolled)).inputs["sha"] == first.sha
    audit = AuditEvent.objects.get(action="deploy.rollback")
    assert audit.detail["from_sha"] == second.sha
    assert audit.detail["to_sha"] == first.sha
    assert audit.actor_name == sre.username


def test_rollback_without_an_earlier_commit_says_why(
    sim: Simulator, sre: User, clock: Clock, viewer: User
) -> None:
    env = simulated_env(sim)
    deployed(sim, env, sre, clock)
    response = logged_in(sre).post(
        f"{DEPLOYS}rollback/",
        {"environment": "production"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert (
        "no earlier succeeded deploy of another commit"
        in (response.json()["environment"][0])
    )
    forbidden = logged_in(viewer).post(
        f"{DEPLOYS}rollback/",
        {"environment": "production"},
        content_type="application/json",
    )
    assert forbidden.status_code == 403


def test_deployed_now_lists_each_environment_with_a_compare_link(
    sim: Simulator, sre: User, viewer: User, clock: Clock
) -> None:
    env = simulated_env(sim)
    make_env("staging", pool_runner("staging-1"), repository=REPO)
    first = deployed(sim, env, sre, clock)
    sim.push("main")
    second = deployed(sim, env, sre, clock)
    response = logged_in(viewer).get("/api/v1/deployed-now/")
    assert response.status_code == 200
    rows = {row["environment"]: row for row in response.json()}
    assert rows["staging"]["sha"] is None
    prod = rows["production"]
    assert (prod["deploy"], prod["sha"], prod["ref"]) == (second.pk, second.sha, "main")
    assert prod["requester_name"] == sre.username
    assert prod["runner"] == PRIMARY
    assert prod["previous_sha"] == first.sha
    assert prod["compare_url"] == (
        f"{sim.url}/acme/deploy/compare/{first.sha}...{second.sha}"
    )
    assert prod["run_url"].startswith(f"{sim.url}/acme/deploy/actions/runs/")
    # No deployment_status webhook told of a GitHub deployment: no link invented.
    assert prod["deployment_url"] == ""
    DeployAttempt.objects.filter(run=second).update(github_deployment_id=77)
    prod = {
        row["environment"]: row
        for row in logged_in(viewer).get("/api/v1/deployed-now/").json()
    }["production"]
    assert prod["deployment_url"] == f"{sim.url}/acme/deploy/deployments/production"
    page = logged_in(viewer).get("/deploys/deployed/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-sha="{second.sha}"' in html
    assert f"/compare/{first.sha}...{second.sha}" in html
    env_page = logged_in(viewer).get("/deploys/environments/production/").content
    assert f'data-sha="{first.sha}"'.encode() in env_page
    assert f'data-sha="{second.sha}"'.encode() in env_page


@pytest.mark.parametrize("environments", [1, 6])
def test_deployed_now_query_count_does_not_grow_with_environments(
    environments: int, viewer: User, django_assert_num_queries: Any
) -> None:
    for n in range(environments):
        env = make_env(f"env-{n}")
        for state in ("succeeded", "succeeded", "failed"):
            DeployRun.objects.create(
                environment=env, ref="main", sha=f"{n:040x}", state=state
            )
    client = logged_in(viewer)
    client.get("/api/v1/deployed-now/")  # the session and permissions warm up
    # session, user, roles; environments; their runs
    with django_assert_num_queries(5):
        response = client.get("/api/v1/deployed-now/")
    assert len(response.json()) == environments


def test_the_deploy_form_names_an_unknown_ref_and_creates_nothing(
    sim: Simulator, sre: User
) -> None:
    simulated_env(sim)
    client = logged_in(sre)
    response = client.post(
        "/deploys/new/",
        {"environment": "production", "ref": "typo-branch", "idempotency_key": "f-1"},
    )
    assert response.status_code == 400
    assert "&#x27;typo-branch&#x27; is not a branch, tag or commit" in (
        response.content.decode()
    )
    assert not DeployRun.objects.exists()
