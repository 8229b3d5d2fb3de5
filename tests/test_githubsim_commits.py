"""The simulator's commits, refs and comparisons over HTTP, in GitHub's shapes
(tests/data/github/rest.subset.json): branches move when pushed, runs carry the
ref's SHA at dispatch, and a job given a SHA that is not on its ref fails at checkout."""

from __future__ import annotations

import pytest
import requests

from githubsim import Simulator
from tests.simhttp import (
    REPO,
    assert_rest_shape,
    get,
    github,
    job_of,
    post,
)

pytestmark = pytest.mark.sim(time_scale=600, seed=7)

COMMIT = "/repos/{owner}/{repo}/commits/{ref}"
GIT_REF = "/repos/{owner}/{repo}/git/ref/{ref}"
COMPARE = "/repos/{owner}/{repo}/compare/{basehead}"


def push(sim: Simulator, ref: str = "main") -> str:
    response = requests.post(
        f"{sim.url}/_sim/repos/acme/deploy/push", json={"ref": ref}, timeout=10
    )
    assert response.status_code == 201, response.text
    sha: str = response.json()["sha"]
    return sha


def dispatch_sha(sim: Simulator, sha: str, ref: str = "main") -> int:
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {
            "ref": ref,
            "inputs": {"runner": "prod-1", "token": "t-1", "sha": sha},
            "return_run_details": True,
        },
    )
    assert response.status_code == 200, response.text
    run_id: int = response.json()["workflow_run_id"]
    return run_id


def test_a_push_moves_the_branch_and_get_commit_answers_its_sha(sim: Simulator):
    before = assert_rest_shape("GET", COMMIT, get(sim, f"{REPO}/commits/main"))
    sha = push(sim)
    after = assert_rest_shape("GET", COMMIT, get(sim, f"{REPO}/commits/main"))
    assert before["sha"] != sha
    assert after["sha"] == sha
    assert after["parents"][0]["sha"] == before["sha"]
    # A SHA (full or abbreviated) answers the same commit.
    assert get(sim, f"{REPO}/commits/{sha}").json()["sha"] == sha
    assert get(sim, f"{REPO}/commits/{sha[:7]}").json()["sha"] == sha


def test_unknown_ref_or_sha_is_githubs_422(sim: Simulator):
    for ref in ("no-such-branch", "0" * 40):
        response = get(sim, f"{REPO}/commits/{ref}")
        assert response.status_code == 422
        body = assert_rest_shape("GET", COMMIT, response)
        assert body["message"] == f"No commit found for SHA: {ref}"
    assert get(sim, "/repos/acme/nope/commits/main").status_code == 404


def test_pygithub_reads_commits_of_branches_with_slashes_and_tags(sim: Simulator):
    feature = push(sim, "feature/login")
    sim.create_tag("v1.2.3", feature)
    repo = github(sim).get_repo("acme/deploy")
    assert repo.get_commit("feature/login").sha == feature
    assert repo.get_commit("v1.2.3").sha == feature
    assert repo.get_git_ref("heads/feature/login").object.sha == feature
    assert repo.get_git_ref("tags/v1.2.3").object.sha == feature


def test_git_ref_shape_and_404_for_unknown_refs(sim: Simulator):
    sha = push(sim)
    body = assert_rest_shape("GET", GIT_REF, get(sim, f"{REPO}/git/ref/heads/main"))
    assert (body["ref"], body["object"]["sha"]) == ("refs/heads/main", sha)
    missing = get(sim, f"{REPO}/git/ref/heads/nope")
    assert missing.status_code == 404
    assert_rest_shape("GET", GIT_REF, missing)
    # A bare branch name is not a ref path: GitHub wants heads/ or tags/.
    assert get(sim, f"{REPO}/git/ref/main").status_code == 404


def test_compare_says_ahead_behind_identical_and_diverged(sim: Simulator):
    first = sim.sha_of("main")
    second = push(sim)
    third = push(sim)
    ahead = assert_rest_shape(
        "GET", COMPARE, get(sim, f"{REPO}/compare/{first}...{third}")
    )
    assert (ahead["status"], ahead["ahead_by"], ahead["behind_by"]) == ("ahead", 2, 0)
    assert [c["sha"] for c in ahead["commits"]] == [second, third]
    assert ahead["html_url"].endswith(f"/acme/deploy/compare/{first}...{third}")
    behind = get(sim, f"{REPO}/compare/main...{first}").json()
    assert (behind["status"], behind["ahead_by"], behind["behind_by"]) == (
        "behind",
        0,
        2,
    )
    same = get(sim, f"{REPO}/compare/{third}...main").json()
    assert (same["status"], same["total_commits"]) == ("identical", 0)
    side = push(sim, "hotfix")  # branches from main's tip (third)
    push(sim)
    diverged = get(sim, f"{REPO}/compare/main...{side}").json()
    assert (diverged["status"], diverged["ahead_by"], diverged["behind_by"]) == (
        "diverged",
        1,
        1,
    )
    assert diverged["merge_base_commit"]["sha"] == third
    assert get(sim, f"{REPO}/compare/main...nope").status_code == 404
    assert get(sim, f"{REPO}/compare/main").status_code == 404


def test_run_head_sha_is_the_refs_sha_at_dispatch(sim: Simulator):
    sim.add_runner("prod-1", ["production"])
    at_dispatch = push(sim)
    run_id = dispatch_sha(sim, at_dispatch)
    push(sim)  # the branch moves on; the run keeps its head_sha
    run = get(sim, f"{REPO}/actions/runs/{run_id}").json()
    assert run["head_sha"] == at_dispatch
    assert run["head_commit"]["id"] == at_dispatch
    filtered = get(sim, f"{REPO}/actions/runs", params={"head_sha": at_dispatch})
    assert [r["id"] for r in filtered.json()["workflow_runs"]] == [run_id]


def test_dispatch_of_an_unknown_ref_is_refused(sim: Simulator):
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {"ref": "no-such-branch", "inputs": {}},
    )
    assert response.status_code == 422
    assert response.json()["message"] == "No ref found for: no-such-branch"


def test_an_older_sha_on_the_ref_checks_out_and_succeeds(sim: Simulator):
    sim.add_runner("prod-1", ["production"])
    old = sim.sha_of("main")
    push(sim)
    run_id = dispatch_sha(sim, old)
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed")
    job = job_of(sim, run_id)
    assert job["conclusion"] == "success"
    assert [s["name"] for s in job["steps"]] == [
        "Set up job",
        "Check out",
        "Deploy",
        "Complete job",
    ]
    listed = requests.get(f"{sim.url}/_sim/repos/acme/deploy/checkouts", timeout=10)
    (run,) = listed.json()["runs"]
    assert (run["id"], run["checked_out"], run["sha_input"]) == (run_id, old, old)
    assert run["head_sha"] == sim.sha_of("main") != old


def test_a_sha_not_on_the_ref_fails_fast_at_check_out(sim: Simulator):
    sim.add_runner("prod-1", ["production"])
    elsewhere = push(sim, "experiment")
    sim.configure(job_duration=100_000)  # a checkout that passed would run for long
    run_id = dispatch_sha(sim, elsewhere)
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed")
    job = job_of(sim, run_id)
    assert job["conclusion"] == "failure"
    steps = {s["name"]: s["conclusion"] for s in job["steps"]}
    assert steps == {
        "Set up job": "success",
        "Check out": "failure",
        "Deploy": "skipped",
        "Complete job": "skipped",
    }
    assert get(sim, f"{REPO}/actions/runs/{run_id}").json()["conclusion"] == "failure"
    listed = requests.get(f"{sim.url}/_sim/repos/acme/deploy/checkouts", timeout=10)
    assert listed.json()["runs"][0]["checked_out"] is None


def test_control_push_and_tag_refuse_bad_input(sim: Simulator):
    url = f"{sim.url}/_sim/repos/acme/deploy"
    assert requests.post(f"{url}/push", json={"ref": 5}, timeout=10).status_code == 422
    bad = requests.post(f"{url}/push", json={"ref": "tags/v1"}, timeout=10)
    assert bad.status_code == 422
    assert "tags call" in bad.json()["message"]
    missing = requests.post(
        f"{sim.url}/_sim/repos/acme/nope/push", json={"ref": "main"}, timeout=10
    )
    assert missing.status_code == 404
    tag = requests.post(f"{url}/tags", json={"tag": "v9"}, timeout=10)
    assert tag.status_code == 201
    assert tag.json()["sha"] == sim.sha_of("main")
    again = requests.post(f"{url}/tags", json={"tag": "v9"}, timeout=10)
    assert again.status_code == 422
    unknown = requests.post(
        f"{url}/tags", json={"tag": "v10", "target": "nope"}, timeout=10
    )
    assert unknown.status_code == 422
