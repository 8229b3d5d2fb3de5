"""The deploy page's gate: "At the gate" says how long a deploy has been waiting
while it waits, how long before it stopped there when it ended at the gate, and
what the wait came to once past it; a deploy the gate refused under the promotion
rule offers the deploy to the source environment first, as the deploy form does."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from deploys.models import DeployEvent, DeployRun, Environment
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import State
from tests.conftest import logged_in
from tests.deploying import Clock, drive, final, simulated_env
from tests.factories import make_env, pool_runner

Kind = DeployEvent.Kind


def gate_fact(client: Client, run: DeployRun) -> str:
    html = client.get(f"/deploys/{run.pk}/").content.decode()
    match = re.search(r'<dd id="run-gate-wait">([^<]*)</dd>', html)
    assert match is not None, "no At the gate fact"
    return match.group(1)


def gating_since(t0: datetime, *, state: str = DeployRun.State.GATING) -> DeployRun:
    env = make_env("production", pool_runner("p1", State.UNHEALTHY))
    run = DeployRun.objects.create(
        environment=env,
        ref="main",
        state=state,
        created_at=t0,
        gate_started_at=t0,
        started_at=t0,
        timeouts={"gate_timeout": 300},
    )
    DeployEvent.objects.create(run=run, kind=Kind.GATING, created_at=t0)
    return run


@pytest.mark.django_db
@pytest.mark.usefixtures("github")
def test_a_deploy_still_at_the_gate_says_for_how_long(viewer_client: Client) -> None:
    t0 = timezone.now().replace(microsecond=0)
    run = gating_since(t0)

    with time_machine.travel(t0, tick=False):
        assert gate_fact(viewer_client, run) == "at the gate for 0 s"
    with time_machine.travel(t0 + timedelta(seconds=12), tick=False):
        assert gate_fact(viewer_client, run) == "at the gate for 12 s"


@pytest.mark.django_db
@pytest.mark.usefixtures("github")
def test_only_a_deploy_past_the_gate_passed_it_at_once(viewer_client: Client) -> None:
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    run = gating_since(t0, state=DeployRun.State.RUNNING)
    DeployEvent.objects.create(run=run, kind=Kind.GATE_PASSED, created_at=t0)

    assert gate_fact(viewer_client, run) == "passed the gate at once"

    DeployEvent.objects.filter(kind=Kind.GATE_PASSED).update(
        created_at=t0 + timedelta(seconds=9)
    )
    assert gate_fact(viewer_client, run) == "waited at the gate 9 s"


@pytest.mark.django_db
@pytest.mark.usefixtures("github")
def test_back_at_the_gate_after_a_failover_counts_the_open_wait(
    viewer_client: Client,
) -> None:
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    run = gating_since(t0)
    for kind, after in ((Kind.GATE_PASSED, 5), (Kind.FAILOVER, 100)):
        DeployEvent.objects.create(
            run=run, kind=kind, created_at=t0 + timedelta(seconds=after)
        )

    with time_machine.travel(t0 + timedelta(seconds=130), tick=False):
        fact = gate_fact(viewer_client, run)

    assert fact == "at the gate for 30 s (35 s in all over 2 waits)"


@pytest.mark.django_db
@pytest.mark.sim(time_scale=600, seed=19, pickup_delay=5, job_duration=20, connect=True)
def test_a_deploy_the_gate_refused_as_not_promoted_offers_the_source_first(
    sim: Simulator, sre: User
) -> None:
    staging = simulated_env(sim, ("staging-1",), name="staging")
    production = simulated_env(sim)
    sha = sim.push("main")
    run = request_deploy(sre, production, "main").run
    # The rule is set after the request: the gate, not the request, refuses it.
    Environment.objects.filter(pk=production.pk).update(promote_from=staging)
    run = drive(run, final, Clock())
    assert run.reason == DeployRun.Reason.NOT_PROMOTED

    client = logged_in(sre)
    html = client.get(f"/deploys/{run.pk}/").content.decode()
    # Refused at the gate, never past it.
    assert gate_fact(client, run).startswith("stopped at the gate")

    offer = re.search(r'id="promote-link" href="([^"]+)">(.+?)</a>', html, re.S)
    assert offer is not None, "no offer on the deploy page"
    # The deploy form's own offer: staging's form with the same ref and commit.
    assert offer.group(1) == (
        f"/deploys/new/?environment=staging&amp;ref=main&amp;sha={sha}"
    )
    text = re.sub(r"<[^>]+>", "", offer.group(2))
    assert text == f"Deploy main @ {sha[:12]} to staging first…"
    form = logged_in(sre).get(offer.group(1).replace("&amp;", "&")).content.decode()
    assert '<option value="staging" selected>' in form
    assert f'name="sha" value="{sha}"' in form


@pytest.mark.django_db
@pytest.mark.usefixtures("github")
def test_a_deploy_that_timed_out_at_the_gate_says_it_stopped_there(
    viewer_client: Client,
) -> None:
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=10)
    run = gating_since(t0, state=DeployRun.State.FAILED)
    DeployRun.objects.filter(pk=run.pk).update(
        reason=DeployRun.Reason.NO_HEALTHY_RUNNER,
        finished_at=t0 + timedelta(seconds=300),
    )

    html = viewer_client.get(f"/deploys/{run.pk}/").content.decode()

    assert gate_fact(viewer_client, run) == "stopped at the gate after 300 s"
    assert 'id="promote-offer"' not in html  # only the promotion rule offers one
