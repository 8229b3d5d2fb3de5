"""The GitHub simulator answers in GitHub's shapes and behaves like GitHub where it matters.

Every response is validated against GitHub's OpenAPI description (tests/data/github/) and
every webhook payload against GitHub's webhook schemas.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
import requests
from github import Auth, Github, GithubException, GithubIntegration
from nacl.public import PublicKey, SealedBox

from githubsim import (
    Simulator,
    environment_scope,
    organization_scope,
    repository_scope,
)
from githubsim.cli import main as cli_main
from tests.simhttp import (
    REPO,
    TOKEN,
    Captured,
    assert_component_shape,
    assert_rest_shape,
    assert_webhook_shape,
    dispatch,
    get,
    github,
    job_of,
    post,
)

# Fixtures -------------------------------------------------------------------------------


# 600 sim seconds per real second: pickup 5 s, jobs 20 s and the 600 s lease are all
# well under two real seconds.
pytestmark = pytest.mark.sim(time_scale=600, demo=True, seed=7)


@pytest.fixture
def receiver() -> Iterator[Captured]:
    captured = Captured()
    yield captured
    captured.close()


# Authentication, errors, rate limits ----------------------------------------------------


def test_missing_token_gets_githubs_401(sim):
    response = requests.get(sim.url + f"{REPO}/actions/runners", timeout=5)
    assert response.status_code == 401
    assert response.json()["message"] == "Requires authentication"
    assert "documentation_url" in response.json()


def test_rate_limit_endpoint_matches_schema_and_headers(sim):
    get(sim, f"{REPO}/actions/runners")
    response = get(sim, "/rate_limit")
    body = assert_rest_shape("GET", "/rate_limit", response)
    assert body["rate"]["used"] == 1
    assert body["rate"]["limit"] == 5000
    assert response.headers["x-ratelimit-remaining"] == "4999"
    assert response.headers["x-ratelimit-resource"] == "core"
    assert int(response.headers["x-ratelimit-reset"]) > sim.clock.now()


def test_budget_is_per_token_and_exhaustion_answers_403(sim):
    sim.configure(rate_limit=3)
    for _ in range(3):
        assert get(sim, f"{REPO}/actions/runners").status_code == 200
    refused = get(sim, f"{REPO}/actions/runners")
    assert refused.status_code == 403
    assert refused.json()["message"].startswith("API rate limit exceeded")
    assert refused.headers["x-ratelimit-remaining"] == "0"
    other = get(sim, f"{REPO}/actions/runners", headers={"Authorization": "Bearer b"})
    assert other.status_code == 200
    assert other.headers["x-ratelimit-remaining"] == "2"


def test_budget_window_resets_after_a_simulated_hour(sim):
    sim.configure(rate_limit=1)
    assert get(sim, f"{REPO}/actions/runners").status_code == 200
    assert get(sim, f"{REPO}/actions/runners").status_code == 403
    sim.clock.advance(3601)
    assert get(sim, f"{REPO}/actions/runners").status_code == 200


# Runners ---------------------------------------------------------------------------------


def test_runner_shape_has_default_labels_and_its_own_name(sim):
    gh = github(sim)
    runners = list(gh.get_repo("acme/deploy").get_self_hosted_runners())
    assert [r.name for r in runners][:2] == ["prod-primary-1", "prod-secondary-1"]
    response = get(sim, f"{REPO}/actions/runners/{runners[0].id}")
    body = assert_rest_shape(
        "GET", "/repos/{owner}/{repo}/actions/runners/{runner_id}", response
    )
    labels = {(label["name"], label["type"]) for label in body["labels"]}
    assert {
        ("self-hosted", "read-only"),
        ("Linux", "read-only"),
        ("X64", "read-only"),
        ("prod-primary-1", "custom"),
        ("production", "custom"),
    } <= labels
    org = get(sim, f"/orgs/acme/actions/runners/{runners[0].id}")
    assert org.json() == body


def test_runner_pages_link_header_and_etag(sim):
    sim.add_runners(242, prefix="fleet")  # 250 with the demo fleet
    first = get(sim, f"{REPO}/actions/runners", params={"per_page": 100})
    body = assert_rest_shape("GET", "/repos/{owner}/{repo}/actions/runners", first)
    assert body["total_count"] == 250
    assert len(body["runners"]) == 100
    host = sim.url
    assert (
        f'<{host}{REPO}/actions/runners?per_page=100&page=2>; rel="next"'
        in (first.headers["Link"])
    )
    assert (
        f'<{host}{REPO}/actions/runners?per_page=100&page=3>; rel="last"'
        in (first.headers["Link"])
    )
    remaining = first.headers["x-ratelimit-remaining"]

    again = get(
        sim,
        f"{REPO}/actions/runners",
        params={"per_page": 100},
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["x-ratelimit-remaining"] == remaining

    # GitHub flips the status after the offline lag; the page (and its ETag) change.
    sim.configure(offline_lag=0)
    sim.kill("prod-primary-1")
    assert sim.wait_until(
        lambda: sim.state.runner("prod-primary-1").status == "offline"
    )
    changed = get(
        sim,
        f"{REPO}/actions/runners",
        params={"per_page": 100},
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert changed.status_code == 200
    assert changed.json()["runners"][0]["status"] == "offline"


def test_pygithub_follows_every_page(sim):
    sim.add_runners(142, prefix="fleet")
    gh = Github(
        base_url=sim.url,
        auth=Auth.Token("t"),
        per_page=100,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    sim.state.reset_request_counts()
    names = [r.name for r in gh.get_organization("acme").get_self_hosted_runners()]
    assert len(names) == 150
    assert len(set(names)) == 150
    assert sim.state.request_count("GET /orgs/{org}/actions/runners") == 2


def test_offline_lag_and_revive(sim):
    sim.configure(offline_lag=100_000)
    sim.kill("staging-1")
    runner = get(sim, f"{REPO}/actions/runners", params={"name": "staging-1"})
    assert runner.json()["runners"][0]["status"] == "online"  # GitHub has not noticed
    sim.clock.advance(100_000)
    assert sim.wait_until(lambda: sim.state.runner("staging-1").status == "offline")
    sim.revive("staging-1")
    runner = get(sim, f"{REPO}/actions/runners", params={"name": "staging-1"})
    assert runner.json()["runners"][0]["status"] == "online"


def test_removed_runner_disappears(sim):
    runner_id = sim.state.runner("build-2").id
    sim.remove_runner("build-2")
    assert get(sim, f"{REPO}/actions/runners/{runner_id}").status_code == 404
    names = [r["name"] for r in get(sim, f"{REPO}/actions/runners").json()["runners"]]
    assert "build-2" not in names
    assert len(names) == 7


def test_ten_thousand_runners_page_through_and_revalidate_for_free():
    with Simulator(runners=10_000) as sim:
        etags = []
        pages = 0
        url: str | None = sim.url + f"{REPO}/actions/runners?per_page=100"
        seen = 0
        while url:
            response = requests.get(url, headers=TOKEN, timeout=10)
            assert response.status_code == 200
            assert response.json()["total_count"] == 10_000
            seen += len(response.json()["runners"])
            etags.append((url, response.headers["ETag"]))
            pages += 1
            url = response.links.get("next", {}).get("url")
        assert pages == 100
        assert seen == 10_000
        before = get(sim, "/rate_limit").json()["rate"]["used"]
        for page_url, etag in etags:
            response = requests.get(
                page_url, headers={**TOKEN, "If-None-Match": etag}, timeout=10
            )
            assert response.status_code == 304
        assert get(sim, "/rate_limit").json()["rate"]["used"] == before == 100


# Dispatch, runs and jobs ------------------------------------------------------------------


def test_dispatch_runs_on_the_named_runner_and_completes(sim, receiver):
    sim.set_webhook(receiver.url, "It's a Secret to Everybody")
    gh = github(sim)
    workflow = gh.get_repo("acme/deploy").get_workflow("deploy.yml")
    assert_rest_shape(
        "GET",
        "/repos/{owner}/{repo}/actions/workflows/{workflow_id}",
        get(sim, f"{REPO}/actions/workflows/{workflow.id}"),
    )
    run = workflow.create_dispatch(
        "main",
        {"runner": "prod-secondary-1", "token": "tok-42"},
        throw=True,
        return_run_details=True,
    )
    assert sim.wait_until(lambda: job_of(sim, run.id)["status"] == "completed")
    response = get(sim, f"{REPO}/actions/runs/{run.id}")
    body = assert_rest_shape(
        "GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", response
    )
    assert body["display_title"] == body["name"] == "Deploy main [tok-42]"
    assert body["head_branch"] == "main"
    assert body["event"] == "workflow_dispatch"
    assert (body["status"], body["conclusion"]) == ("completed", "success")

    jobs = get(sim, f"{REPO}/actions/runs/{run.id}/jobs")
    job = assert_rest_shape(
        "GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", jobs
    )["jobs"][0]
    assert job["runner_name"] == "prod-secondary-1"
    assert job["conclusion"] == "success"
    assert all(step["conclusion"] == "success" for step in job["steps"])
    single = get(sim, f"{REPO}/actions/jobs/{job['id']}")
    assert_rest_shape("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", single)
    assert sim.state.runner("prod-secondary-1").busy is False

    # Webhooks: ping, then the run and job lifecycles, signed, in GitHub's shapes.
    assert sim.webhooks.wait_idle()
    events = receiver.events()
    kinds = [(event, payload.get("action")) for event, payload, _, _ in events]
    assert kinds[0] == ("ping", None)
    assert sorted(kinds[1:]) == sorted(
        [
            ("workflow_run", "requested"),
            ("workflow_job", "queued"),
            ("workflow_job", "in_progress"),
            ("workflow_run", "in_progress"),
            ("workflow_job", "completed"),
            ("workflow_run", "completed"),
        ]
    )
    queued = next(p for e, p, _, _ in events if p.get("action") == "queued")
    assert queued["workflow_job"]["labels"] == ["self-hosted", "prod-secondary-1"]
    assert queued["workflow_job"]["runner_name"] is None
    assert queued["workflow_job"]["run_id"] == run.id
    for event, payload, headers, raw in events:
        name = "ping" if event == "ping" else f"{event}-{payload['action']}"
        assert_webhook_shape(name.replace("_", "-"), payload)
        expected = hmac.new(b"It's a Secret to Everybody", raw, hashlib.sha256)
        assert headers["x-hub-signature-256"] == f"sha256={expected.hexdigest()}"
        assert headers["user-agent"] == "GitHub-Hookshot/githubsim"
        assert headers["content-type"] == "application/json"
        assert headers["x-github-hook-id"]
    deliveries = {headers["x-github-delivery"] for _, _, headers, _ in events}
    assert len(deliveries) == len(events)
    assert sim.status()["webhooks"] == {"sent": len(events), "failed": 0}


def test_webhook_signature_matches_githubs_test_vector():
    from githubsim.webhooks import signature

    assert signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_failed_webhook_deliveries_are_counted_not_retried(sim):
    sim.set_webhook("http://127.0.0.1:9/unreachable", "s")
    dispatch(sim, "staging-1")
    assert sim.webhooks.wait_idle(15)
    log = sim.state.deliveries()[::-1]  # oldest first
    # ping + requested + queued (and, on a slow machine, the job's later events
    # too), each tried exactly once: GitHub never retries by itself.
    assert [(d["event"], d["action"]) for d in log[:3]] == [
        ("ping", None),
        ("workflow_run", "requested"),
        ("workflow_job", "queued"),
    ]
    assert len({d["guid"] for d in log}) == len(log)
    assert not any(d["redelivery"] for d in log)
    assert sim.status()["webhooks"] == {"sent": 0, "failed": len(log)}


def test_dispatch_without_run_details_answers_204_and_run_is_found_by_token(sim):
    before = sim.clock.now()
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {"ref": "main", "inputs": {"runner": "staging-1", "token": "find-me"}},
    )
    assert response.status_code == 204
    assert response.content == b""
    from githubsim.clock import isoformat

    runs = get(
        sim,
        f"{REPO}/actions/runs",
        params={
            "event": "workflow_dispatch",
            "created": f">={isoformat(before - 1)}",
            "exclude_pull_requests": "true",
        },
    )
    body = assert_rest_shape("GET", "/repos/{owner}/{repo}/actions/runs", runs)
    assert [r["display_title"] for r in body["workflow_runs"]] == [
        "Deploy main [find-me]"
    ]
    later = get(
        sim,
        f"{REPO}/actions/runs",
        params={"created": f">={isoformat(sim.clock.now() + 3600)}"},
    )
    assert later.json()["total_count"] == 0


def test_old_enterprise_server_rejects_return_run_details(sim):
    sim.set_faults(reject_return_run_details=True)
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {"ref": "main", "inputs": {"runner": "staging-1"}, "return_run_details": True},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "return_run_details"
    assert sim.status()["runs"] == 0


def test_unknown_workflow_and_too_many_inputs(sim):
    missing = post(
        sim, f"{REPO}/actions/workflows/nope.yml/dispatches", {"ref": "main"}
    )
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    inputs = {f"i{n}": "x" for n in range(26)}
    too_many = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {"ref": "main", "inputs": inputs},
    )
    assert too_many.status_code == 422
    assert "errors" in too_many.json()


def test_exclude_pull_requests_must_be_a_boolean(sim):
    response = get(sim, f"{REPO}/actions/runs", params={"exclude_pull_requests": "1"})
    assert response.status_code == 422
    assert get(
        sim, f"{REPO}/actions/runs", params={"exclude_pull_requests": "false"}
    ).ok


def test_failure_outcome_fails_a_step(sim):
    sim.set_outcome("failure")
    run_id = dispatch(sim, "staging-1")
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed")
    job = job_of(sim, run_id)
    assert job["conclusion"] == "failure"
    assert [s["conclusion"] for s in job["steps"]].count("failure") == 1


def test_job_for_a_dead_runner_stays_queued_then_github_cancels_after_a_day(sim):
    sim.kill("prod-primary-1")
    run_id = dispatch(sim, "prod-primary-1")
    sim.clock.advance(3600)
    sim.state.tick()
    assert job_of(sim, run_id)["status"] == "queued"
    sim.clock.advance(24 * 3600)
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed")
    assert job_of(sim, run_id)["conclusion"] == "cancelled"


def test_queued_job_is_picked_up_when_its_runner_comes_back(sim):
    sim.kill("staging-2")
    run_id = dispatch(sim, "staging-2")
    sim.clock.advance(60)
    sim.state.tick()
    assert job_of(sim, run_id)["status"] == "queued"
    sim.revive("staging-2")
    assert sim.wait_until(lambda: job_of(sim, run_id)["runner_name"] == "staging-2")


def test_runner_death_mid_job_fails_with_lost_communication_after_the_lease(sim):
    sim.configure(job_duration=100_000)
    run_id = dispatch(sim, "prod-primary-1")
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "in_progress")
    killed_at = sim.clock.now()
    sim.kill("prod-primary-1")
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed")
    job = job_of(sim, run_id)
    assert job["conclusion"] == "failure"
    assert "failure" not in [s["conclusion"] for s in job["steps"]]
    assert "cancelled" in [s["conclusion"] for s in job["steps"]]
    from githubsim.clock import parse_iso

    assert parse_iso(job["completed_at"]) >= int(killed_at) + 600 - 1
    view = requests.get(f"{sim.url}/_sim/jobs/{job['id']}", timeout=5).json()
    assert "lost communication" in view["note"]


def test_lose_job_through_the_control_api(sim):
    sim.configure(job_duration=100_000, lease_timeout=30)
    run_id = dispatch(sim, "staging-1")
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "in_progress")
    job_id = job_of(sim, run_id)["id"]
    lost = requests.post(f"{sim.url}/_sim/jobs/{job_id}/lose", timeout=5)
    assert lost.status_code == 200
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed")
    assert job_of(sim, run_id)["conclusion"] == "failure"
    assert sim.state.runner("staging-1").busy is False


def test_cancel_queued_is_immediate_and_completed_is_a_conflict(sim):
    sim.configure(pickup_delay=100_000)
    run_id = dispatch(sim, "staging-1")
    assert post(sim, f"{REPO}/actions/runs/{run_id}/cancel").status_code == 202
    assert job_of(sim, run_id)["conclusion"] == "cancelled"
    again = post(sim, f"{REPO}/actions/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["message"] == "Cannot cancel a workflow run that is completed."


def test_cancel_running_job_on_live_runner_takes_effect_after_a_short_delay(sim):
    sim.configure(job_duration=100_000)
    run_id = dispatch(sim, "staging-1")
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "in_progress")
    assert post(sim, f"{REPO}/actions/runs/{run_id}/cancel").status_code == 202
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed")
    job = job_of(sim, run_id)
    assert job["conclusion"] == "cancelled"
    assert "failure" not in [s["conclusion"] for s in job["steps"]]


def test_cancel_on_dead_runner_needs_force_cancel(sim):
    sim.configure(job_duration=100_000, lease_timeout=100_000)
    run_id = dispatch(sim, "prod-primary-1")
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "in_progress")
    sim.kill("prod-primary-1")
    assert post(sim, f"{REPO}/actions/runs/{run_id}/cancel").status_code == 202
    sim.clock.advance(120)
    sim.state.tick()
    assert job_of(sim, run_id)["status"] == "in_progress"
    assert post(sim, f"{REPO}/actions/runs/{run_id}/force-cancel").status_code == 202
    job = job_of(sim, run_id)
    assert (job["status"], job["conclusion"]) == ("completed", "cancelled")
    run = get(sim, f"{REPO}/actions/runs/{run_id}").json()
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")


def test_job_labels_without_runner_input_match_any_runner(sim):
    response = post(
        sim, f"{REPO}/actions/workflows/deploy.yml/dispatches", {"ref": "main"}
    )
    assert response.status_code == 204
    run_id = sim.state.runs("acme/deploy")[0].id
    assert job_of(sim, run_id)["labels"] == ["self-hosted"]
    assert sim.wait_until(lambda: job_of(sim, run_id)["runner_name"] is not None)


# Secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "path", "scope"),
    [
        (
            f"{REPO}/actions/secrets",
            "/repos/{owner}/{repo}/actions/secrets",
            repository_scope("acme/deploy"),
        ),
        (
            f"{REPO}/environments/production/secrets",
            "/repos/{owner}/{repo}/environments/{environment_name}/secrets",
            environment_scope("acme/deploy", "production"),
        ),
        (
            "/orgs/acme/actions/secrets",
            "/orgs/{org}/actions/secrets",
            organization_scope("acme"),
        ),
    ],
)
def test_sealed_secret_round_trip(sim, prefix, path, scope):
    key = get(sim, f"{prefix}/public-key")
    key_body = assert_rest_shape("GET", f"{path}/public-key", key)
    sealed = SealedBox(PublicKey(base64.b64decode(key_body["key"]))).encrypt(b"s3cr3t")
    body = {
        "encrypted_value": base64.b64encode(sealed).decode(),
        "key_id": key_body["key_id"],
    }
    if scope[0] == "organization":
        body["visibility"] = "private"
    created = requests.put(f"{sim.url}{prefix}/NEW_SECRET", json=body, headers=TOKEN)
    assert created.status_code == 201
    assert sim.state.decrypt_secret(scope, "NEW_SECRET") == "s3cr3t"
    first = assert_rest_shape(
        "GET", f"{path}/{{secret_name}}", get(sim, f"{prefix}/NEW_SECRET")
    )

    sim.clock.advance(10)
    sealed = SealedBox(PublicKey(base64.b64decode(key_body["key"]))).encrypt(b"next")
    body["encrypted_value"] = base64.b64encode(sealed).decode()
    updated = requests.put(f"{sim.url}{prefix}/NEW_SECRET", json=body, headers=TOKEN)
    assert updated.status_code == 204
    assert sim.state.decrypt_secret(scope, "NEW_SECRET") == "next"
    second = get(sim, f"{prefix}/NEW_SECRET").json()
    assert second["updated_at"] > first["updated_at"]
    assert second["created_at"] == first["created_at"]

    listing = assert_rest_shape("GET", path, get(sim, prefix))
    assert "NEW_SECRET" in [s["name"] for s in listing["secrets"]]
    assert listing["total_count"] == len(listing["secrets"])
    assert all("value" not in s for s in listing["secrets"])
    if scope[0] == "organization":
        assert second["visibility"] == "private"

    gone = requests.delete(f"{sim.url}{prefix}/NEW_SECRET", headers=TOKEN)
    assert gone.status_code == 204
    assert get(sim, f"{prefix}/NEW_SECRET").status_code == 404


def test_pygithub_create_secret_seals_with_the_served_key(sim):
    gh = github(sim)
    repo = gh.get_repo("acme/deploy")
    repo.create_secret("DEPLOY_KEY", "from-pygithub")
    assert sim.state.decrypt_secret(repository_scope("acme/deploy"), "DEPLOY_KEY") == (
        "from-pygithub"
    )
    repo.get_environment("staging").create_secret("API_TOKEN", "env-value")
    assert (
        sim.state.decrypt_secret(
            environment_scope("acme/deploy", "staging"), "API_TOKEN"
        )
        == "env-value"
    )
    gh.get_organization("acme").create_secret("ORG_TOKEN", "org-value")
    assert sim.state.decrypt_secret(organization_scope("acme"), "ORG_TOKEN") == (
        "org-value"
    )
    names = {s.name for s in repo.get_secrets()}
    assert {"DEPLOY_KEY", "REGISTRY_TOKEN"} <= names


def test_secret_put_with_wrong_key_or_garbage_is_refused(sim):
    key = get(sim, f"{REPO}/actions/secrets/public-key").json()
    sealed = SealedBox(PublicKey(base64.b64decode(key["key"]))).encrypt(b"x")
    stale = requests.put(
        f"{sim.url}{REPO}/actions/secrets/X",
        json={"encrypted_value": base64.b64encode(sealed).decode(), "key_id": "123"},
        headers=TOKEN,
    )
    assert stale.status_code == 422
    garbage = requests.put(
        f"{sim.url}{REPO}/actions/secrets/X",
        json={
            "encrypted_value": base64.b64encode(b"x" * 64).decode(),
            "key_id": key["key_id"],
        },
        headers=TOKEN,
    )
    assert garbage.status_code == 422
    # An environment's key cannot open a repository secret's box.
    other = get(sim, f"{REPO}/environments/production/secrets/public-key").json()
    wrong_box = SealedBox(PublicKey(base64.b64decode(other["key"]))).encrypt(b"x")
    crossed = requests.put(
        f"{sim.url}{REPO}/actions/secrets/X",
        json={
            "encrypted_value": base64.b64encode(wrong_box).decode(),
            "key_id": key["key_id"],
        },
        headers=TOKEN,
    )
    assert crossed.status_code == 422
    assert get(sim, f"{REPO}/actions/secrets/X").status_code == 404


# Faults --------------------------------------------------------------------------------------


def test_error_rate_answers_a_share_with_5xx_in_githubs_shape(sim):
    sim.set_faults(error_rate=0.3)
    statuses = [get(sim, f"{REPO}/actions/runners").status_code for _ in range(300)]
    errors = [s for s in statuses if s >= 500]
    assert set(errors) <= {502, 503}
    assert 60 <= len(errors) <= 120
    assert statuses.count(200) == 300 - len(errors)
    # The control API never fails.
    assert all(requests.get(f"{sim.url}/_sim/state", timeout=5).ok for _ in range(20))
    sim.clear_faults()
    assert get(sim, f"{REPO}/actions/runners").status_code == 200


def test_rate_limit_faults_carry_the_headers_clients_obey(sim):
    sim.set_faults(rate_limit_rate=1.0)
    primary = get(sim, f"{REPO}/actions/runners")
    assert primary.status_code == 403
    assert primary.headers["x-ratelimit-remaining"] == "0"
    reset = int(primary.headers["x-ratelimit-reset"])
    assert sim.clock.now() < reset <= sim.clock.now() + 61

    sim.set_faults(rate_limit_rate=0.0, secondary_rate_limit_rate=1.0)
    secondary = get(sim, f"{REPO}/actions/runners")
    assert secondary.status_code == 403
    assert "secondary rate limit" in secondary.json()["message"]
    assert secondary.headers["retry-after"] == "60"

    sim.set_faults(secondary_rate_limit_rate=0.0, too_many_requests_rate=1.0)
    too_many = get(sim, f"{REPO}/actions/runners")
    assert too_many.status_code == 429
    assert too_many.headers["retry-after"] == "60"

    with pytest.raises(GithubException) as caught:
        list(github(sim, lazy=True).get_repo("acme/deploy").get_self_hosted_runners())
    assert caught.value.status == 429


def test_request_counts_per_endpoint(sim):
    sim.state.reset_request_counts()
    run_id = dispatch(sim, "staging-1")
    get(sim, f"{REPO}/actions/runs/{run_id}")
    get(sim, f"{REPO}/actions/runs/{run_id}")
    assert (
        sim.state.request_count("GET /repos/{owner}/{repo}/actions/runs/{run_id}") == 2
    )
    assert (
        sim.state.request_count(
            "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
        )
        == 1
    )
    assert sim.state.request_count() == 3
    counts = requests.get(f"{sim.url}/_sim/requests", timeout=5).json()
    assert sum(counts.values()) == 3


# GitHub App -------------------------------------------------------------------------------


def test_installation_tokens_work_until_they_expire(sim):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    integration = GithubIntegration(
        auth=Auth.AppAuth(12345, pem),
        base_url=sim.url,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    token = integration.get_access_token(99)
    assert token.token.startswith("ghs_")
    raw = post(
        sim,
        "/app/installations/99/access_tokens",
        headers={"Authorization": f"Bearer {integration.auth.token}"},
    )
    assert_rest_shape("POST", "/app/installations/{installation_id}/access_tokens", raw)
    installation = get(
        sim,
        "/app/installations/99",
        headers={"Authorization": f"Bearer {integration.auth.token}"},
    )
    assert_rest_shape("GET", "/app/installations/{installation_id}", installation)

    headers = {"Authorization": f"token {token.token}"}
    assert get(sim, f"{REPO}/actions/runners", headers=headers).status_code == 200
    sim.clock.advance(3601)
    expired = get(sim, f"{REPO}/actions/runners", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["message"] == "Bad credentials"

    not_jwt = post(
        sim,
        "/app/installations/99/access_tokens",
        headers={"Authorization": "Bearer x"},
    )
    assert not_jwt.status_code == 401


# Heartbeats and exporters -------------------------------------------------------------------


def test_heartbeats_post_with_the_runner_token(receiver):
    with Simulator(time_scale=100, demo=True, heartbeat_url=receiver.url) as sim:
        sim.set_heartbeat_token("staging-1", "hb-token-1")
        sim.fill_disk("staging-1", free_percent=3)
        assert sim.wait_until(lambda: len(receiver.requests) >= 1)
        headers, body = receiver.requests[0]
        assert headers["authorization"] == "Bearer hb-token-1"
        beat = json.loads(body)
        assert set(beat) == {
            "runner_version",
            "disk_free_bytes",
            "disk_total_bytes",
            "load1",
            "cpus",
            "uptime_seconds",
        }
        assert beat["disk_free_bytes"] == beat["disk_total_bytes"] * 3 // 100
        # Only staging-1 has a token; only it sends.
        assert {h["authorization"] for h, _ in receiver.requests} == {
            "Bearer hb-token-1"
        }

        sim.stop_heartbeats("staging-1")
        sim.wait_until(lambda: False, timeout=0.3)  # let in-flight beats land
        count = len(receiver.requests)
        sim.wait_until(lambda: False, timeout=0.5)  # 50 sim seconds: 5 intervals
        assert len(receiver.requests) == count
        sim.start_heartbeats("staging-1")
        assert sim.wait_until(lambda: len(receiver.requests) > count)


def test_exporter_serves_node_metrics_and_dead_hosts_hang_up(sim):
    sim.set_load("build-1", 20)
    sim.fill_disk("build-1", free_percent=5)
    response = requests.get(f"{sim.url}/_sim/exporter/build-1/metrics", timeout=5)
    assert response.headers["Content-Type"].startswith("text/plain")
    lines = response.text.splitlines()
    runner = sim.state.runner("build-1")
    assert (
        f'node_filesystem_avail_bytes{{device="/dev/sda1",fstype="ext4",mountpoint="/"}} '
        f"{runner.disk_total_bytes * 5 // 100}" in lines
    )
    assert "node_load1 20.0" in lines
    assert sum(line.startswith("node_cpu_seconds_total{") for line in lines) == 4
    assert any(line.startswith("node_time_seconds ") for line in lines)
    sim.kill("build-1")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.url}/_sim/exporter/build-1/metrics", timeout=5)


# Control API and CLI -----------------------------------------------------------------------


def test_ctl_commands_drive_the_simulator(sim, capsys):
    assert cli_main(["ctl", "--url", sim.url, "kill", "staging-1"]) == 0
    assert sim.state.runner("staging-1").alive is False
    assert cli_main(["ctl", "--url", sim.url, "revive", "staging-1"]) == 0
    assert sim.state.runner("staging-1").alive is True
    assert cli_main(["ctl", "--url", sim.url, "fill-disk", "staging-1"]) == 0
    assert cli_main(["ctl", "--url", sim.url, "load", "staging-1", "--load1", "9"]) == 0
    assert sim.state.runner("staging-1").load1 == 9
    assert cli_main(["ctl", "--url", sim.url, "set-token", "staging-1", "tkn"]) == 0
    assert sim.state.runner("staging-1").heartbeat_token == "tkn"
    assert cli_main(["ctl", "--url", sim.url, "stop-heartbeats", "staging-1"]) == 0
    assert sim.state.runner("staging-1").heartbeats is False
    assert (
        cli_main(
            [
                "ctl",
                "--url",
                sim.url,
                "add-runners",
                "--count",
                "3",
                "--prefix",
                "x",
                "--labels",
                "a,b",
            ]
        )
        == 0
    )
    assert "a" in sim.state.runner("x-3").custom_labels
    assert cli_main(["ctl", "--url", sim.url, "remove", "x-3"]) == 0
    assert sim.state.find_runner("x-3") is None
    assert (
        cli_main(
            [
                "ctl",
                "--url",
                sim.url,
                "faults",
                "--error-rate",
                "0.3",
                "--latency-ms",
                "0",
                "--reject-return-run-details",
            ]
        )
        == 0
    )
    assert sim.state.faults.error_rate == 0.3
    assert sim.state.faults.reject_return_run_details is True
    assert cli_main(["ctl", "--url", sim.url, "outcome", "failure"]) == 0
    assert sim.state.config.outcome == "failure"
    capsys.readouterr()
    assert cli_main(["ctl", "--url", sim.url, "status"]) == 0
    assert json.loads(capsys.readouterr().out)["runners"]["total"] == 10


def test_ctl_fails_clearly(sim, capsys):
    assert cli_main(["ctl", "--url", sim.url, "kill", "no-such-runner"]) == 1
    assert "said no (404)" in capsys.readouterr().err
    assert cli_main(["ctl", "--url", "http://127.0.0.1:9", "status"]) == 1
    assert "cannot reach the simulator" in capsys.readouterr().err


def test_control_api_config_and_reset(sim):
    answer = requests.post(
        f"{sim.url}/_sim/config",
        json={"pickup_delay": 1, "job_duration": 2, "time_scale": 50},
        timeout=5,
    ).json()
    assert (answer["pickup_delay"], answer["job_duration"], answer["time_scale"]) == (
        1.0,
        2.0,
        50.0,
    )
    assert sim.clock.time_scale == 50
    bad = requests.post(f"{sim.url}/_sim/config", json={"nope": 1}, timeout=5)
    assert bad.status_code == 422
    sim.add_runners(5)
    dispatch(sim, "staging-1")
    reset = requests.post(f"{sim.url}/_sim/reset", timeout=5).json()
    assert reset["runners"]["total"] == 8  # the demo fleet again
    assert reset["runs"] == 0
    assert reset["config"]["pickup_delay"] == 1.0
    assert requests.get(f"{sim.url}/_sim/runners/staging-1", timeout=5).json()["alive"]


def test_remaining_endpoints_and_errors_match_githubs_schemas(sim):
    sim.configure(pickup_delay=100_000)  # still queued when cancelled: cancels at once
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {"ref": "main", "inputs": {"runner": "staging-1"}, "return_run_details": True},
    )
    dispatch_path = "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
    body = assert_rest_shape("POST", dispatch_path, response)
    run_id = body["workflow_run_id"]
    assert body["run_url"] == f"{sim.url}{REPO}/actions/runs/{run_id}"

    org = get(sim, "/orgs/acme/actions/runners", params={"per_page": 5})
    assert (
        assert_rest_shape("GET", "/orgs/{org}/actions/runners", org)["total_count"] == 8
    )
    flow_runs = get(sim, f"{REPO}/actions/workflows/deploy.yml/runs")
    listed = assert_rest_shape(
        "GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs", flow_runs
    )
    assert [r["id"] for r in listed["workflow_runs"]] == [run_id]

    cancel = post(sim, f"{REPO}/actions/runs/{run_id}/cancel")
    assert_rest_shape(
        "POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", cancel
    )
    conflict = post(sim, f"{REPO}/actions/runs/{run_id}/force-cancel")
    assert_rest_shape(
        "POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/force-cancel", conflict
    )
    assert conflict.status_code == 409

    missing = get(sim, f"{REPO}/actions/runs/1")
    assert missing.status_code == 404
    assert_component_shape("basic-error", missing.json())
    invalid = post(sim, f"{REPO}/actions/workflows/deploy.yml/dispatches", {})
    assert invalid.status_code == 422
    assert_rest_shape(
        "POST", "/app/installations/{installation_id}/access_tokens", invalid
    )


def test_weak_and_listed_etags_are_honoured(sim):
    first = get(sim, f"{REPO}/actions/runs")
    tag = first.headers["ETag"]
    again = get(sim, f"{REPO}/actions/runs", headers={"If-None-Match": f'"x", W/{tag}'})
    assert again.status_code == 304
    dispatch(sim, "staging-1")
    assert (
        get(sim, f"{REPO}/actions/runs", headers={"If-None-Match": tag}).status_code
        == 200
    )


def test_settings_of_the_wrong_type_are_refused(sim):
    bad = requests.post(
        f"{sim.url}/_sim/faults", json={"error_rate": "lots"}, timeout=5
    )
    assert bad.status_code == 422
    negative = requests.post(
        f"{sim.url}/_sim/config", json={"job_duration": -1}, timeout=5
    )
    assert negative.status_code == 422
    flag = requests.post(
        f"{sim.url}/_sim/faults", json={"reject_return_run_details": "false"}, timeout=5
    )
    assert flag.json()["reject_return_run_details"] is False


def test_pygithub_reads_runs_and_jobs_and_cancels(sim):
    repo = github(sim).get_repo("acme/deploy")
    workflow = repo.get_workflow("deploy.yml")
    started = workflow.create_dispatch(
        "main",
        {"runner": "staging-1", "token": "t1"},
        throw=True,
        return_run_details=True,
    )
    assert sim.wait_until(
        lambda: repo.get_workflow_run(started.id).status == "completed"
    )
    run = repo.get_workflow_run(started.id)
    assert (run.display_title, run.conclusion) == ("Deploy main [t1]", "success")
    assert [job.runner_name for job in run.jobs()] == ["staging-1"]
    assert run.update() is False  # unchanged: a free 304

    waiting = workflow.create_dispatch(
        "main", {"runner": "nobody"}, throw=True, return_run_details=True
    )
    assert repo.get_workflow_run(waiting.id).cancel() is True
    assert repo.get_workflow_run(waiting.id).conclusion == "cancelled"
    titles = [
        r.display_title for r in repo.get_workflow_runs(event="workflow_dispatch")
    ]
    assert titles == ["Deploy main []", "Deploy main [t1]"]
