"""Every GitHub request is counted under why it was made, and the budget panel and
``/metrics`` show the share of each purpose."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.github import GitHubConflict, gateway, gateway_from_settings
from controlplane.github.purpose import OPERATION_PURPOSES
from controlplane.models import GitHubPurposeUsage, GitHubUsage
from deploys import webhook_recovery
from deploys.models import DeployRun
from deploys.triggers import request_deploy
from githubsim import Simulator
from rotations import gate as secrets_gate
from runners import sync
from tests.deploying import REPO, Clock, drive, final, simulated_env

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600, seed=7, pickup_delay=5, job_duration=20, connect=True
    ),
]


def charged(purpose: str) -> int:
    row = GitHubPurposeUsage.objects.filter(purpose=purpose).first()
    return row.requests_total - row.not_modified_total if row else 0


def test_each_caller_counts_its_requests_under_its_own_purpose(
    sim: Simulator, sre: User, settings: Any
) -> None:
    settings.SITE_URL = "http://cp.example.com"
    sim.set_webhook("http://cp.example.com/github/webhook", "s3cret")
    sim.state.set_secret(("repository", REPO), "DB_PASSWORD", "x")
    env = simulated_env(sim, required_secrets=["DB_PASSWORD"])

    sync.sync_fleet()
    run = drive(request_deploy(sre, env).run, final, Clock())
    github_run_id = run.attempts.get().github_run_id
    assert github_run_id is not None
    with pytest.raises(GitHubConflict):
        gateway().cancel_run(github_run_id)  # already completed: 409, still counted
    webhook_recovery.recover()

    assert run.state == DeployRun.State.SUCCEEDED
    for purpose in (
        "sync",
        "secrets_gate",
        "dispatch",
        "deploy_poll",
        "cancel",
        "webhook_recovery",
    ):
        assert charged(purpose) >= 1, purpose
    # Nothing went uncounted or unnamed.
    usage = GitHubUsage.objects.get()
    assert usage.requests_total == sum(
        r.requests_total for r in GitHubPurposeUsage.objects.all()
    )
    assert not GitHubPurposeUsage.objects.filter(purpose="other").exists()


def test_an_installation_token_fetch_is_counted_apart_from_the_call_needing_it(
    sim: Simulator,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    sim.add_runners(1)
    gw = gateway_from_settings(
        base_url=sim.url, token="", app_id=1, installation_id=1, private_key=pem
    )

    gw.list_runners_page(1)

    assert charged("installation_token") == 1
    assert charged("sync") == 1


def test_the_budget_panel_and_metrics_show_the_share_by_purpose(
    viewer: User,
) -> None:
    for purpose, responses, not_modified in (
        ("sync", 10, 4),
        ("deploy_poll", 30, 28),
        ("dispatch", 2, 0),
    ):
        for _ in range(responses):
            GitHubUsage.objects.record(counter="requests_total", purpose=purpose)
        for _ in range(not_modified):
            GitHubUsage.objects.record(counter="not_modified_total", purpose=purpose)
    client = Client()
    client.force_login(viewer)

    html = client.get("/").content.decode()
    metrics = Client().get("/metrics").content.decode()

    panel = html[html.index('id="budget-by-purpose"') :]
    # Charged: sync 6, deploy_poll 2, dispatch 2 of 10; most spent first.
    assert panel.index(">sync<") < panel.index(">deploy_poll<")
    assert "<td>6</td>\n          <td>60%</td>" in panel
    assert "<td>2</td>\n          <td>20%</td>" in panel
    assert 'controlplane_github_purpose_requests_total{purpose="deploy_poll"} 30.0' in (
        metrics
    )
    assert (
        'controlplane_github_purpose_not_modified_total{purpose="sync"} 4.0' in metrics
    )


def test_the_secret_gate_asks_again_for_free_while_the_secrets_are_unchanged(
    sim: Simulator,
) -> None:
    env = simulated_env(sim, required_secrets=["DB_PASSWORD", "API_KEY"])
    sim.state.set_secret(("repository", REPO), "DB_PASSWORD", "x")
    now = timezone.now()

    first, _ = secrets_gate.check(env, now)
    spent = charged("secrets_gate")
    again, _ = secrets_gate.check(env, now)
    assert charged("secrets_gate") == spent  # answered 304
    sim.state.set_secret(("repository", REPO), "API_KEY", "y")
    after, _ = secrets_gate.check(env, now)

    assert first == again == ["API_KEY"]
    assert after == []
    assert charged("secrets_gate") == spent + 1  # the changed list only


def test_every_gateway_operation_has_a_purpose() -> None:
    source = "".join(
        path.read_text()
        for path in (Path(__file__).parent.parent / "controlplane" / "github").glob(
            "*.py"
        )
    )
    operations = set(re.findall(r'\._(?:get|post|pages|call)\(\s*"([a-z_]+)"', source))

    assert {"dispatch_workflow", "list_workflow_runs", "force_cancel_run"} <= operations
    assert operations <= set(OPERATION_PURPOSES), operations - set(OPERATION_PURPOSES)
