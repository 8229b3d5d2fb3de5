"""Allowed refs through the simulator over HTTP: an environment's fnmatch globs over
full ref names refuse other branches and tags at request time (400 naming the rule),
a branch named like a release tag does not slip through, an admin may break glass,
and a bad pattern is a 400 naming the field, in the API and in the admin site."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys import rules
from deploys.commits import CommitLookupError
from deploys.models import DeployRun, Environment
from githubsim import Simulator
from tests.conftest import logged_in
from tests.deploying import REPO, Clock, drive, final, github_id, simulated_env
from tests.test_admin_audit import env_form

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=15,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]

DEPLOYS = "/api/v1/deploys/"
GIT_REF = "GET /repos/{owner}/{repo}/git/ref/{ref}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def git_ref_calls(sim: Simulator) -> int:
    counts = requests.get(f"{sim.url}/_sim/requests", timeout=5).json()
    return int(counts.get(GIT_REF, 0))


def ask(user: User, ref: str, **body: str) -> Any:
    return logged_in(user).post(
        DEPLOYS,
        {"environment": "production", "ref": ref, **body},
        content_type="application/json",
    )


def test_a_branch_is_refused_where_only_release_tags_may_go_with_a_400_naming_the_rule(
    sim: Simulator, sre: User
) -> None:
    simulated_env(sim, allowed_refs="refs/tags/v*")
    response = ask(sre, "main")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "ref_not_allowed"
    assert body["field"] == "ref"
    assert body["detail"] == (
        "production deploys only refs matching refs/tags/v* (its allowed_refs rule): "
        "neither the branch nor a tag named main would match. An admin may break "
        "glass with a reason."
    )
    assert body["rules"] == [{"code": "ref_not_allowed", "rule": "allowed_refs"}]
    assert not DeployRun.objects.exists()
    refused = AuditEvent.objects.get(action="deploy.request")
    assert refused.outcome == AuditEvent.Outcome.DENIED
    assert refused.detail["code"] == "ref_not_allowed"
    # Neither name could match: GitHub was not asked which exists.
    assert git_ref_calls(sim) == 0


def test_a_release_tag_is_deployed_exactly(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    simulated_env(sim, allowed_refs="refs/tags/v*")
    tagged = sim.create_tag("v1.2.3", sim.push("main"))
    response = ask(sre, "v1.2.3")
    assert response.status_code == 202, response.content
    assert response.json()["sha"] == tagged
    # The tag exists and no branch of that name does: two exact lookups.
    assert git_ref_calls(sim) == 2
    run = drive(DeployRun.objects.get(), final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    assert sim.state.get_run(REPO, github_id(run)).head_sha == tagged


def test_a_branch_named_like_a_release_tag_does_not_slip_through(
    sim: Simulator, sre: User, clock: Clock
) -> None:
    simulated_env(sim, allowed_refs="refs/tags/v*")
    sim.push("v2")  # a branch anyone with write access can push
    branch_only = ask(sre, "v2")
    assert branch_only.status_code == 400
    assert (
        "v2 is also a branch (refs/heads/v2), which does not match"
        in (branch_only.json()["detail"])
    )
    tagged = sim.create_tag("v2", "main")  # now a tag of that name exists too
    ambiguous = ask(sre, "v2")
    assert ambiguous.status_code == 400
    assert "ask for refs/tags/v2 to deploy the tag" in ambiguous.json()["detail"]
    full = ask(sre, "refs/tags/v2")
    assert full.status_code == 202, full.content
    assert full.json()["sha"] == tagged
    run = drive(DeployRun.objects.get(), final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    dispatched = sim.state.get_run(REPO, github_id(run))
    assert (dispatched.head_sha, dispatched.inputs["sha"]) == (tagged, tagged)


def test_the_default_branch_rule_allows_main_and_refuses_other_branches(
    sim: Simulator, sre: User
) -> None:
    simulated_env(sim, allowed_refs="refs/heads/main, refs/tags/release-*")
    sim.push("feature/login")
    assert ask(sre, "main").status_code == 202
    refused = ask(sre, "feature/login")
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith(
        "production deploys only refs matching refs/heads/main refs/tags/release-* "
    )
    assert DeployRun.objects.count() == 1


def test_a_short_sha_is_no_branch_even_where_every_branch_may_go(
    sim: Simulator, sre: User
) -> None:
    simulated_env(sim, allowed_refs="refs/heads/*")
    short = ask(sre, sim.sha_of("main")[:10])
    assert short.status_code == 400
    assert "is not a branch or tag of acme/deploy." in short.json()["detail"]
    assert not DeployRun.objects.exists()


def test_an_admin_breaks_glass_past_the_rule_an_sre_may_not(
    sim: Simulator, sre: User, admin_user: User
) -> None:
    simulated_env(sim, allowed_refs="refs/tags/v*")
    sim.push("hotfix")
    by_sre = ask(sre, "hotfix", break_glass_reason="INC-9 fix")
    assert by_sre.status_code == 403
    assert by_sre.json()["code"] == "break_glass_forbidden"
    by_admin = ask(admin_user, "hotfix", break_glass_reason="INC-9 fix")
    assert by_admin.status_code == 202, by_admin.content
    run = DeployRun.objects.get()
    glass = run.events.get(kind="break_glass")
    assert (
        glass.message == f"allowed-refs rule broken by {admin_user.username}: INC-9 fix"
    )
    assert glass.detail == {"rules": ["ref_not_allowed"]}
    audited = AuditEvent.objects.get(action="deploy.break_glass")
    assert audited.detail["rules"] == ["ref_not_allowed"]
    assert audited.detail["reason"] == "INC-9 fix"


def test_github_silent_about_the_ref_neither_allows_nor_refuses(
    sim: Simulator,
) -> None:
    env = simulated_env(sim, allowed_refs="refs/tags/v*")
    sim.set_faults(error_rate=1.0)
    with pytest.raises(CommitLookupError) as raised:
        rules.check(env, "v1", "", timezone.now())
    assert raised.value.unavailable
    assert raised.value.field == "ref"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("v*", "'v*' must start with refs/heads/ (branches) or refs/tags/ (tags)"),
        ("refs/tags/", "'refs/tags/' names no branch or tag"),
        ("refs/tags/[v*", "'refs/tags/[v*' has an unclosed [ ] set"),
        ("refs/heads/a..b", "'refs/heads/a..b' is not a ref pattern"),
    ],
)
def test_a_bad_pattern_is_a_400_naming_the_field(
    admin_user: User, value: str, problem: str
) -> None:
    Environment.objects.create(name="production", repository=REPO)
    response = logged_in(admin_user).patch(
        "/api/v1/environments/production/",
        {"allowed_refs": value},
        content_type="application/json",
    )
    assert response.status_code == 400
    [message] = response.json()["allowed_refs"]
    assert message.startswith(problem)
    assert Environment.objects.get().allowed_refs == ""


def test_admins_set_the_rule_through_the_api_and_sres_read_it(
    admin_user: User, sre: User
) -> None:
    Environment.objects.create(name="production", repository=REPO)
    url = "/api/v1/environments/production/"
    change = {"allowed_refs": "refs/tags/v* refs/heads/main"}
    denied = logged_in(sre).patch(url, change, content_type="application/json")
    assert denied.status_code == 403
    saved = logged_in(admin_user).patch(url, change, content_type="application/json")
    assert saved.status_code == 200, saved.content
    assert logged_in(sre).get(url).json()["allowed_refs"] == change["allowed_refs"]
    audited = AuditEvent.objects.get(action="environment.update")
    assert audited.detail["fields"] == ["allowed_refs"]


def test_the_admin_site_refuses_a_bad_pattern_with_its_help_text(
    admin_user: User,
) -> None:
    env = Environment.objects.create(name="production", repository=REPO)
    client = logged_in(admin_user)
    url = f"/admin/deploys/environment/{env.pk}/change/"
    page = client.get(url).content.decode()
    assert "fnmatch-style globs over full ref names" in page
    refused = client.post(url, env_form(env, allowed_refs="tags/v*"))
    assert refused.status_code == 200
    assert "must start with refs/heads/ (branches) or refs/tags/" in (
        refused.content.decode()
    )
    env.refresh_from_db()
    assert env.allowed_refs == ""
