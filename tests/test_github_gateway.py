"""The GitHub gateway against the bundled simulator over HTTP (PyGithub is never mocked)."""

from __future__ import annotations

import ast
import socket
import threading
import traceback
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane.github import (
    GitHubAmbiguousWrite,
    GitHubAuthError,
    GitHubConflict,
    GitHubGateway,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubUnavailable,
    GitHubValidationError,
    JobInfo,
    StepInfo,
    gateway,
    gateway_for,
    gateway_from_settings,
    reset_gateway,
)
from controlplane.models import GitHubUsage
from githubsim import (
    Simulator,
    environment_scope,
    organization_scope,
    repository_scope,
)

REPO = "acme/deploy"
TOKEN = "ghp_TopSecretTokenValue0123456789abcdef"  # noqa: S105
RUNNERS = "GET /repos/{owner}/{repo}/actions/runners"
DISPATCH = "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
ACCESS_TOKENS = "POST /app/installations/{installation_id}/access_tokens"


class Counts:
    """A usage sink that keeps counters in memory and the last budget headers."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.headers: Mapping[str, str] | None = None

    def __call__(self, counter: str, headers: Mapping[str, str] | None) -> None:
        self.counters[counter] += 1
        if headers:
            self.headers = headers


class SimSleep:
    """Sleeps on the simulator's clock and remembers how long each wait was."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.waits: list[float] = []
        self.before_wake: list[Any] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sim.clock.sleep(seconds)
        # One scripted change per wake-up, so tests can say "after the n-th wait".
        if self.before_wake:
            self.before_wake.pop(0)()


# 600 simulated seconds per real second: a one-minute rate-limit wait takes 0.1 s.
pytestmark = pytest.mark.sim(time_scale=600, seed=7, pickup_delay=30, job_duration=60)


@pytest.fixture
def counts() -> Counts:
    return Counts()


@pytest.fixture
def sleeper(sim: Simulator) -> SimSleep:
    return SimSleep(sim)


def make_gateway(
    sim: Simulator, counts: Counts | None = None, sleep: Any = None, **kw: Any
) -> GitHubGateway:
    options: dict[str, Any] = {
        "base_url": sim.url,
        "repository": REPO,
        "token": TOKEN,
        "clock": sim.clock.now,
        "sleep": sleep or sim.clock.sleep,
        "sink": counts if counts is not None else Counts(),
        "max_retries": 3,
        "max_rate_limit_wait": 900.0,
    }
    options.update(kw)
    return GitHubGateway(**options)


def remaining(sim: Simulator, token: str = TOKEN) -> int:
    return sim.state.limits.budget(token)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# Runners ----------------------------------------------------------------------------------


def test_runner_pages_are_typed_and_paginated(sim: Simulator, counts: Counts) -> None:
    sim.add_runner("prod-primary-1", ["production", "primary"])
    sim.add_runners(249)
    gh = make_gateway(sim, counts)

    first = gh.list_runners_page(1)
    last = gh.list_runners_page(3)

    assert not first.not_modified
    assert (first.last_page, first.total_count, len(first.runners)) == (3, 250, 100)
    assert first.has_next and not last.has_next
    assert len(last.runners) == 50
    runner = first.runners[0]
    assert runner.name == "prod-primary-1"
    assert (runner.os, runner.status, runner.busy) == ("Linux", "online", False)
    assert runner.labels == (
        "self-hosted",
        "Linux",
        "X64",
        "production",
        "primary",
        "prod-primary-1",
    )
    assert counts.counters == Counter(requests_total=2)


def test_unchanged_runner_page_is_a_free_304(sim: Simulator, counts: Counts) -> None:
    sim.add_runners(3)
    gh = make_gateway(sim, counts)
    first = gh.list_runners_page(1)
    budget = remaining(sim)

    second = gh.list_runners_page(1, etag=first.etag)

    assert first.etag
    assert second.not_modified and second.runners == []
    assert second.etag == first.etag
    assert remaining(sim) == budget  # a 304 costs nothing
    assert sim.state.request_count(RUNNERS) == 2
    assert counts.counters == Counter(requests_total=2, not_modified_total=1)
    assert gh.budget.remaining == budget


def test_changed_runner_page_is_sent_again(sim: Simulator) -> None:
    sim.add_runners(3)
    gh = make_gateway(sim)
    first = gh.list_runners_page(1)
    sim.kill("runner-2")
    sim.add_runner("late-joiner")

    second = gh.list_runners_page(1, etag=first.etag)

    assert not second.not_modified
    assert second.etag != first.etag
    assert [r.name for r in second.runners][-1] == "late-joiner"


def test_organization_scope_lists_the_organizations_runners(sim: Simulator) -> None:
    sim.add_runners(2)
    gh = make_gateway(sim, organization="acme")

    page = gh.list_runners_page(1)

    assert [r.name for r in page.runners] == ["runner-1", "runner-2"]
    assert sim.state.request_count("GET /orgs/{org}/actions/runners") == 1
    assert gh.get_runner(page.runners[1].id).name == "runner-2"


def test_get_runner_and_missing_runner(sim: Simulator, counts: Counts) -> None:
    runner = sim.add_runner("build-1", ["build"])
    gh = make_gateway(sim, counts)

    found = gh.get_runner(runner.id)
    with pytest.raises(GitHubNotFound) as missing:
        gh.get_runner(999_999)

    assert found.name == "build-1" and "build" in found.labels
    assert missing.value.status == 404
    # A 404 is an answer, not a transport problem: never retried.
    assert counts.counters == Counter(requests_total=2, errors_total=1)


# Retries and rate limits ------------------------------------------------------------------


def test_server_errors_are_retried_with_backoff(
    sim: Simulator, counts: Counts, sleeper: SimSleep
) -> None:
    sim.add_runners(1)
    gh = make_gateway(sim, counts, sleeper)
    sim.set_faults(error_rate=1.0)
    # GitHub recovers while the gateway backs off after its second failure.
    sleeper.before_wake.extend([lambda: None, sim.clear_faults])

    page = gh.list_runners_page(1)

    assert [r.name for r in page.runners] == ["runner-1"]
    assert sim.state.request_count(RUNNERS) == 3
    assert counts.counters == Counter(requests_total=3, errors_total=2, retries_total=2)
    # Full jitter: each wait lies between 0 and the doubling cap.
    assert len(sleeper.waits) == 2
    assert 0 <= sleeper.waits[0] <= 2 and 0 <= sleeper.waits[1] <= 4


def test_persistent_server_errors_give_up_after_max_retries(
    sim: Simulator, counts: Counts
) -> None:
    gh = make_gateway(sim, counts, max_retries=2)
    sim.set_faults(error_rate=1.0)

    with pytest.raises(GitHubUnavailable) as failure:
        gh.get_run(1)

    assert failure.value.status in (502, 503)
    assert sim.state.request_count() == 3
    assert counts.counters == Counter(requests_total=3, errors_total=3, retries_total=2)


def test_primary_rate_limit_is_waited_out_on_the_sim_clock(
    sim: Simulator, counts: Counts, sleeper: SimSleep
) -> None:
    sim.add_runners(1)
    sim.configure(rate_limit_fault_reset=120)
    gh = make_gateway(sim, counts, sleeper)
    sim.set_faults(rate_limit_rate=1.0)
    sleeper.before_wake.append(sim.clear_faults)
    started = sim.clock.now()

    page = gh.list_runners_page(1)

    assert [r.name for r in page.runners] == ["runner-1"]
    # Waited until x-ratelimit-reset (120 simulated seconds away), on the sim clock:
    # one wait of what was left of the window when the 403 arrived (a slow machine
    # spends some simulated seconds before the wait starts), and the retry after it.
    assert len(sleeper.waits) == 1 and 0 < sleeper.waits[0] <= 122
    assert sim.clock.now() - started >= 119
    assert counts.counters == Counter(
        requests_total=2, rate_limited_total=1, retries_total=1
    )


def test_retry_after_is_honoured_for_429(
    sim: Simulator, counts: Counts, sleeper: SimSleep
) -> None:
    sim.configure(retry_after=90)
    gh = make_gateway(sim, counts, sleeper)
    sim.set_faults(too_many_requests_rate=1.0)
    sleeper.before_wake.append(sim.clear_faults)

    runs = gh.list_workflow_runs("deploy.yml")

    assert runs == []
    assert sleeper.waits == [90.0]
    assert counts.counters["rate_limited_total"] == 1


def test_secondary_rate_limit_with_retry_after_is_honoured(
    sim: Simulator, sleeper: SimSleep
) -> None:
    sim.configure(retry_after=75)
    gh = make_gateway(sim, sleep=sleeper)
    sim.set_faults(secondary_rate_limit_rate=1.0)
    sleeper.before_wake.append(sim.clear_faults)

    assert gh.list_secrets("repository") == []
    assert sleeper.waits == [75.0]


def test_rate_limit_longer_than_allowed_raises_without_waiting(
    sim: Simulator, counts: Counts, sleeper: SimSleep
) -> None:
    sim.configure(rate_limit_fault_reset=3600)
    gh = make_gateway(sim, counts, sleeper, max_rate_limit_wait=600)
    sim.set_faults(rate_limit_rate=1.0)

    with pytest.raises(GitHubRateLimited) as limited:
        gh.list_runners_page(1)

    assert limited.value.wait_seconds > 600
    assert "600" in str(limited.value)
    assert sleeper.waits == []
    assert counts.counters == Counter(requests_total=1, rate_limited_total=1)


def test_spent_budget_waits_for_the_window_reset(
    sim: Simulator, sleeper: SimSleep
) -> None:
    sim.configure(rate_limit=2, rate_limit_window=300)
    gh = make_gateway(sim, sleep=sleeper)
    gh.get_runner(sim.add_runner("a").id)
    gh.get_runner(sim.state.runner("a").id)
    started = sim.clock.now()

    assert gh.get_runner(sim.state.runner("a").id).name == "a"

    assert len(sleeper.waits) == 1
    assert sim.clock.now() >= started + sleeper.waits[0] - 1
    assert 0 < sleeper.waits[0] <= 302


class SecondaryLimitOnce(BaseHTTPRequestHandler):
    """A GitHub stand-in whose first answer is a secondary limit with no retry-after."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if type(self).calls == 1:
            body = (
                b'{"message": "You have exceeded a secondary rate limit. Please wait'
                b' a few minutes before you try again."}'
            )
            self.send_response(403)
        else:
            body = b'{"id": 5, "name": "r", "os": "Linux", "status": "online",'
            body += b' "busy": false, "labels": []}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_secondary_rate_limit_without_retry_after_backs_off_a_minute(
    sim: Simulator, counts: Counts, sleeper: SimSleep
) -> None:
    # The simulator always sends retry-after, so a tiny server plays this GitHub quirk.
    server = ThreadingHTTPServer(("127.0.0.1", 0), SecondaryLimitOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gh = make_gateway(
            sim, counts, sleeper, base_url=f"http://127.0.0.1:{server.server_port}"
        )
        runner = gh.get_runner(5)
    finally:
        server.shutdown()
        server.server_close()

    assert runner.id == 5
    assert sleeper.waits == [60.0]
    assert counts.counters["rate_limited_total"] == 1


def test_connection_refused_is_retried_then_reported(counts: Counts) -> None:
    waits: list[float] = []
    gh = GitHubGateway(
        base_url=f"http://127.0.0.1:{free_port()}",
        repository=REPO,
        token=TOKEN,
        max_retries=2,
        sleep=waits.append,
        sink=counts,
    )

    with pytest.raises(GitHubUnavailable) as failure:
        gh.get_run(1)
    # Nothing was listening, so not even a dispatch could have reached GitHub.
    with pytest.raises(GitHubUnavailable):
        gh.dispatch_workflow("deploy.yml", "main", {"token": "t"})

    assert "ConnectionError" in str(failure.value)
    assert len(waits) == 4
    assert counts.counters["retries_total"] == 4
    assert counts.counters["errors_total"] == 6


def test_read_timeouts_are_retried_for_reads(
    sim: Simulator, counts: Counts, sleeper: SimSleep
) -> None:
    sim.add_runners(1)
    gh = make_gateway(sim, counts, sleeper, timeout=0.2)
    sim.set_faults(latency_ms=400)
    sleeper.before_wake.append(sim.clear_faults)

    page = gh.list_runners_page(1)

    assert len(page.runners) == 1
    assert counts.counters["retries_total"] == 1


# Dispatch ---------------------------------------------------------------------------------


def test_dispatch_returns_the_run_and_the_run_can_be_followed(sim: Simulator) -> None:
    sim.add_runner("prod-primary-1", ["production"])
    gh = make_gateway(sim)

    result = gh.dispatch_workflow(
        "deploy.yml", "main", {"runner": "prod-primary-1", "token": "tok-123"}
    )

    assert result.run_id is not None and gh.run_details_supported is True
    assert result.html_url and result.html_url.endswith(f"/runs/{result.run_id}")
    run = gh.get_run(result.run_id)
    assert run.event == "workflow_dispatch" and "tok-123" in run.display_title
    assert run.head_branch == "main" and run.created_at is not None
    assert sim.wait_until(
        lambda: gh.get_run(result.run_id or 0).conclusion == "success", timeout=5
    )
    jobs = gh.list_run_jobs(result.run_id)
    assert len(jobs) == 1
    job = gh.get_job(jobs[0].id)
    assert job.runner_name == "prod-primary-1"
    assert job.conclusion == "success" and job.steps
    assert not job.is_genuine_failure and not job.is_infrastructure_failure
    assert job.created_at is not None and job.created_at >= run.created_at
    assert not job.active


def test_dispatch_falls_back_when_run_details_are_rejected(
    sim: Simulator, counts: Counts
) -> None:
    sim.set_faults(reject_return_run_details=True)
    gh = make_gateway(sim, counts)
    created_since = datetime.fromtimestamp(sim.clock.now() - 1, UTC)

    first = gh.dispatch_workflow("deploy.yml", "main", {"token": "tok-a"})
    second = gh.dispatch_workflow("deploy.yml", "main", {"token": "tok-b"})

    assert first.run_id is None and second.run_id is None
    assert gh.run_details_supported is False
    # One rejected attempt, then plain dispatches only: the gateway remembers.
    assert sim.state.request_count(DISPATCH) == 3
    assert counts.counters["requests_total"] == 3  # nothing but the dispatches
    assert len(sim.state.runs(REPO)) == 2
    found = gh.find_run_by_token("deploy.yml", "tok-b", created_since)
    assert found is not None and "tok-b" in found.display_title
    assert gh.find_run_by_token("deploy.yml", "tok-zzz", created_since) is None


def test_dispatch_is_not_retried_after_a_server_error(
    sim: Simulator, counts: Counts
) -> None:
    gh = make_gateway(sim, counts)
    sim.set_faults(error_rate=1.0)

    with pytest.raises(GitHubAmbiguousWrite):
        gh.dispatch_workflow("deploy.yml", "main", {"token": "tok"})

    assert sim.state.request_count(DISPATCH) == 1
    assert counts.counters["retries_total"] == 0


def test_dispatch_that_times_out_is_not_sent_twice(
    sim: Simulator, counts: Counts
) -> None:
    gh = make_gateway(sim, counts, timeout=0.2)
    sim.set_faults(latency_ms=500)

    with pytest.raises(GitHubAmbiguousWrite):
        gh.dispatch_workflow("deploy.yml", "main", {"token": "tok-slow"})

    # GitHub did create the run after the client gave up: exactly why no retry.
    assert sim.wait_until(lambda: len(sim.state.runs(REPO)) == 1, timeout=3)
    assert sim.state.request_count(DISPATCH) == 1


def test_dispatch_refused_by_a_rate_limit_is_sent_again_after_the_wait(
    sim: Simulator, sleeper: SimSleep
) -> None:
    sim.configure(retry_after=30)
    gh = make_gateway(sim, sleep=sleeper)
    sim.set_faults(too_many_requests_rate=1.0)
    sleeper.before_wake.append(sim.clear_faults)

    result = gh.dispatch_workflow("deploy.yml", "main", {"token": "tok"})

    assert result.run_id is not None
    assert len(sim.state.runs(REPO)) == 1
    assert sleeper.waits == [30.0]


def test_dispatch_to_unknown_workflow_and_too_many_inputs(sim: Simulator) -> None:
    gh = make_gateway(sim)

    with pytest.raises(GitHubNotFound):
        gh.dispatch_workflow("nope.yml", "main", {})
    with pytest.raises(GitHubValidationError, match="at most 25"):
        gh.dispatch_workflow("deploy.yml", "main", {f"i{n}": "x" for n in range(26)})


def test_cancel_and_force_cancel(sim: Simulator) -> None:
    sim.add_runner("prod-primary-1")
    gh = make_gateway(sim)
    queued = gh.dispatch_workflow("deploy.yml", "main", {"runner": "nobody"})
    stuck = gh.dispatch_workflow("deploy.yml", "main", {"runner": "nobody"})
    assert queued.run_id and stuck.run_id

    gh.cancel_run(queued.run_id)
    gh.force_cancel_run(stuck.run_id)

    assert gh.get_run(queued.run_id).conclusion == "cancelled"
    assert gh.get_run(stuck.run_id).conclusion == "cancelled"
    job = gh.list_run_jobs(stuck.run_id)[0]
    assert job.is_infrastructure_failure and not job.is_genuine_failure
    with pytest.raises(GitHubConflict):
        gh.cancel_run(queued.run_id)


def test_list_workflow_runs_filters_and_sends_valid_booleans(sim: Simulator) -> None:
    gh = make_gateway(sim)
    for n in range(3):
        gh.dispatch_workflow("deploy.yml", "main", {"token": f"t{n}"})
    sim.push("release")
    gh.dispatch_workflow("deploy.yml", "release", {"token": "t9"})

    every = gh.list_workflow_runs()
    main = gh.list_workflow_runs("deploy.yml", branch="main")
    future = gh.list_workflow_runs(
        "deploy.yml",
        created_since=datetime.fromtimestamp(sim.clock.now() + 3600, UTC),
    )

    # Newest first; exclude_pull_requests went out as "true", which the schema accepts.
    assert [r.display_title for r in every][0].endswith("[t9]")
    assert len(every) == 4 and len(main) == 3 and future == []


def test_genuine_failure_is_told_apart_from_infrastructure() -> None:
    def job(conclusion: str, steps: tuple[StepInfo, ...]) -> JobInfo:
        return JobInfo(
            1, 2, "deploy", "completed", conclusion, 3, "r", (), None, None, None, steps
        )

    ok = StepInfo("checkout", 1, "completed", "success")
    bad = StepInfo("deploy", 2, "completed", "failure")
    skipped = StepInfo("deploy", 2, "completed", "skipped")

    assert job("failure", (ok, bad)).is_genuine_failure
    assert not job("failure", (ok, bad)).is_infrastructure_failure
    assert job("failure", (ok, skipped)).is_infrastructure_failure
    assert job("cancelled", ()).is_infrastructure_failure
    assert job("failure", (ok, bad)).failed_step == bad


def test_job_lost_with_its_runner_is_an_infrastructure_failure(sim: Simulator) -> None:
    sim.add_runner("prod-primary-1")
    sim.configure(job_duration=100_000, lease_timeout=120)
    gh = make_gateway(sim)
    result = gh.dispatch_workflow("deploy.yml", "main", {"runner": "prod-primary-1"})
    assert result.run_id
    assert sim.wait_until(
        lambda: gh.list_run_jobs(result.run_id or 0)[0].status == "in_progress"
    )
    sim.kill("prod-primary-1")

    assert sim.wait_until(
        lambda: gh.get_run(result.run_id or 0).status == "completed", timeout=5
    )
    job = gh.list_run_jobs(result.run_id)[0]
    assert job.conclusion == "failure"
    assert job.is_infrastructure_failure


def test_failing_deploy_step_is_a_genuine_failure(sim: Simulator) -> None:
    sim.add_runner("prod-primary-1")
    sim.set_outcome("failure")
    gh = make_gateway(sim)
    result = gh.dispatch_workflow("deploy.yml", "main", {"runner": "prod-primary-1"})
    assert result.run_id

    assert sim.wait_until(
        lambda: gh.get_run(result.run_id or 0).status == "completed", timeout=5
    )
    job = gh.list_run_jobs(result.run_id)[0]
    assert job.is_genuine_failure and job.failed_step is not None


# Secrets ----------------------------------------------------------------------------------


def test_sealed_secret_decrypts_in_github_to_the_original(sim: Simulator) -> None:
    gh = make_gateway(sim)
    value = "s3cr3t-Deploy-Key-✓"

    key_id = gh.put_secret("repository", "DEPLOY_KEY", value)

    assert key_id == gh.get_public_key("repository").key_id
    assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == value
    [listed] = gh.list_secrets("repository")
    assert listed.name == "DEPLOY_KEY" and listed.updated_at is not None


def test_environment_and_organization_secrets(sim: Simulator) -> None:
    sim.state.set_secret(
        organization_scope("acme"), "SLACK_WEBHOOK", "old", visibility="selected"
    )
    gh = make_gateway(sim, organization="acme")

    gh.put_secret("environment", "DB_PASSWORD", "env-value", environment="production")
    gh.put_secret("organization", "SLACK_WEBHOOK", "new-value")

    assert (
        sim.state.decrypt_secret(environment_scope(REPO, "production"), "DB_PASSWORD")
        == "env-value"
    )
    org = organization_scope("acme")
    assert sim.state.decrypt_secret(org, "SLACK_WEBHOOK") == "new-value"
    # Rotation keeps who may read the secret.
    assert sim.state.secret_store(org).get("SLACK_WEBHOOK").visibility == "selected"
    assert [s.name for s in gh.list_secrets("environment", "production")] == [
        "DB_PASSWORD"
    ]
    assert [s.name for s in gh.list_secrets("organization")] == ["SLACK_WEBHOOK"]


def test_list_secrets_reads_every_page(sim: Simulator) -> None:
    for n in range(130):
        sim.state.set_secret(repository_scope(REPO), f"S_{n:03d}", "v")
    gh = make_gateway(sim)

    secrets = gh.list_secrets("repository")

    assert len(secrets) == 130 and secrets[-1].name == "S_129"


def test_secret_value_never_appears_in_errors(sim: Simulator) -> None:
    value = "hunter2-very-secret-value"
    gh = make_gateway(sim, max_retries=0)
    sim.set_faults(error_rate=1.0)

    with pytest.raises(Exception) as failure:
        gh.put_secret("repository", "DEPLOY_KEY", value)
    with pytest.raises(GitHubValidationError) as invalid:
        gh.put_secret("repository", "bad name!", value)

    for exc in (failure.value, invalid.value):
        text = "".join(traceback.format_exception(exc))
        assert value not in text and TOKEN not in text


# Auth -------------------------------------------------------------------------------------


def test_token_never_appears_in_error_text(sim: Simulator) -> None:
    gh = make_gateway(sim)

    with pytest.raises(GitHubNotFound) as missing:
        gh.get_job(42)

    text = "".join(traceback.format_exception(missing.value)) + repr(missing.value)
    assert TOKEN not in text
    assert "get_job" in str(missing.value)


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_installation_token_is_renewed_before_it_expires(
    sim: Simulator, counts: Counts
) -> None:
    sim.add_runners(1)
    pem = private_key_pem()
    gh = make_gateway(
        sim, counts, token="", app_id=123, installation_id=1, private_key=pem
    )

    gh.list_runners_page(1)
    gh.list_runners_page(1)
    assert gh.installation_token_refreshes == 1
    # Four minutes before expiry: inside the five-minute margin, so renewed now
    # (PyGithub alone would keep it until 20 s before and fail mid-sync).
    sim.clock.advance(3600 - 240)
    page = gh.list_runners_page(1)

    assert gh.installation_token_refreshes == 2
    assert len(page.runners) == 1
    assert sim.state.request_count(ACCESS_TOKENS) == 2
    # Token fetches are counted like any other request.
    assert counts.counters["requests_total"] == 5


def test_expired_installation_token_is_never_used(sim: Simulator) -> None:
    gh = make_gateway(
        sim, token="", app_id=123, installation_id=1, private_key=private_key_pem()
    )
    gh.list_runners_page(1)
    sim.clock.advance(2 * 3600)

    gh.list_runners_page(1)

    assert gh.installation_token_refreshes == 2


def test_refused_credentials_raise_auth_error_without_the_secret(
    sim: Simulator,
) -> None:
    # A host whose clock lags GitHub's believes an expired token is still good.
    lag = [0.0]
    gh = make_gateway(
        sim,
        token="",
        app_id=1,
        installation_id=1,
        private_key=private_key_pem(),
        clock=lambda: sim.clock.now() - lag[0],
    )
    gh.list_runners_page(1)
    installation_token = gh._installation_auth.current_token  # type: ignore[union-attr]
    assert installation_token
    lag[0] = 2 * 3600
    sim.clock.advance(3600)

    with pytest.raises(GitHubAuthError) as refused:
        gh.list_runners_page(1)

    text = "".join(traceback.format_exception(refused.value))
    assert installation_token not in text and "PRIVATE KEY" not in text
    assert refused.value.status == 401
    # The refused token is dropped, so the next call works with a fresh one.
    assert len(gh.list_runners_page(1).runners) == 0
    assert gh.installation_token_refreshes == 2


# Counters in the database and the factory -------------------------------------------------


@pytest.mark.django_db
def test_counters_and_budget_are_recorded_in_github_usage(
    sim: Simulator, django_assert_num_queries: Any
) -> None:
    sim.add_runners(2)
    gh = GitHubGateway(
        base_url=sim.url, repository=REPO, token=TOKEN, clock=sim.clock.now
    )
    first = gh.list_runners_page(1)

    # Two counters (request, 304), one UPDATE each once the row exists.
    with django_assert_num_queries(2):
        gh.list_runners_page(1, etag=first.etag)

    usage = GitHubUsage.objects.get()
    assert (usage.requests_total, usage.not_modified_total) == (2, 1)
    assert usage.errors_total == usage.retries_total == 0
    limit, left, _, reset = sim.state.limits.budget(TOKEN)
    assert (usage.rate_limit_remaining, usage.rate_limit_limit) == (left, limit)
    assert usage.rate_limit_reset == reset


@pytest.mark.django_db
def test_rate_limited_and_retried_requests_are_counted_in_the_database(
    sim: Simulator,
) -> None:
    sim.configure(retry_after=10)
    sleeper = SimSleep(sim)
    gh = GitHubGateway(
        base_url=sim.url,
        repository=REPO,
        token=TOKEN,
        clock=sim.clock.now,
        sleep=sleeper,
    )
    sim.set_faults(secondary_rate_limit_rate=1.0)
    sleeper.before_wake.append(sim.clear_faults)

    gh.list_secrets("repository")

    usage = GitHubUsage.objects.get()
    assert (usage.requests_total, usage.rate_limited_total, usage.retries_total) == (
        2,
        1,
        1,
    )


def test_gateway_factory_reads_settings_and_is_cached(
    sim: Simulator, settings: Any
) -> None:
    settings.GITHUB_API_URL = sim.url
    settings.GITHUB_ORGANIZATION = "acme"
    settings.GITHUB_TIMEOUT = 2.5
    first = gateway()
    assert gateway() is first
    assert first.runners_url == "/orgs/acme/actions/runners"
    assert first.timeout == 2.5
    assert gateway_from_settings(max_retries=0).max_retries == 0


def test_one_cache_holds_a_gateway_per_repository(settings: Any) -> None:
    settings.GITHUB_API_URL = "http://127.0.0.1:9"  # never called: clients are lazy
    settings.GITHUB_REPOSITORY = REPO
    settings.GITHUB_TOKEN = TOKEN
    settings.GITHUB_APP_ID = ""
    settings.GITHUB_ORGANIZATION = ""
    configured = gateway()
    other = gateway_for("acme/other")

    assert gateway_for(REPO) is configured
    assert gateway_for("acme/other") is other
    assert other is not configured
    assert other.repository == "acme/other"

    reset_gateway()

    assert gateway() is not configured
    assert gateway_for("acme/other") is not other


def test_only_the_gateway_package_imports_pygithub() -> None:
    root = Path(__file__).resolve().parent.parent
    package = root / "controlplane" / "github"
    importers = []
    for path in root.rglob("*.py"):
        if path.is_relative_to(package) or not path.is_relative_to(root):
            continue
        if {".venv", "tests", "node_modules"} & set(path.relative_to(root).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            if any(m == "github" or m.startswith("github.") for m in modules):
                importers.append(str(path.relative_to(root)))

    assert importers == []


def test_parsed_times_are_utc(sim: Simulator) -> None:
    gh = make_gateway(sim)
    result = gh.dispatch_workflow("deploy.yml", "main", {})
    run = gh.get_run(result.run_id or 0)

    assert run.created_at is not None
    assert run.created_at.utcoffset() == timedelta(0)
    assert abs(run.created_at.timestamp() - sim.clock.now()) < 120
