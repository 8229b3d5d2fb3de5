"""Deploys on a team's copy of the reference workflow that lacks inputs the engine
sends, end to end through the real gateway and the GitHub simulator (which refuses
undeclared inputs as GitHub does).

A copy without the optional ``ticket`` still deploys: the first dispatch is refused,
sent again at once without it, and the environment remembers the gap so the next
deploy pays no refusal. A copy without an essential input fails, saying what to add.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.db.models import F

from deploys.engine.inputs import REMEMBERED_FOR
from deploys.models import DeployRun, Environment, UndeclaredInput
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.conftest import ROOT
from tests.deploying import (
    DISPATCH,
    REPO,
    Clock,
    drive,
    final,
    github_id,
    kinds,
    simulated_env,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(time_scale=600, pickup_delay=5, job_duration=20, connect=True),
]

SHIPPED = ROOT / "deploys/workflows/deploy.yml"
LEFT_OUT = "input_left_out"


def copy_without(*names: str, add: dict[str, Any] | None = None) -> str:
    """The shipped deploy.yml as a team's copy that lacks inputs ``names`` (and
    declares ``add`` besides)."""
    doc = yaml.safe_load(SHIPPED.read_text())
    doc["on"] = doc.pop(True)  # YAML 1.1 (PyYAML) reads the key `on` as True
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    for name in names:
        del inputs[name]
    inputs.update(add or {})
    return str(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def env(sim: Simulator) -> Environment:
    return simulated_env(sim)


def deploy(env: Environment, sre: User) -> DeployRun:
    run = request_deploy(sre, env, "main", "INFRA-473").run
    return drive(run, final, Clock())


def test_an_old_copy_without_ticket_deploys_and_the_next_deploy_pays_no_refusal(
    sim: Simulator, env: Environment, sre: User
) -> None:
    sim.set_workflow("deploy.yml", yaml=copy_without("ticket"))

    first = deploy(env, sre)

    assert first.state == DeployRun.State.SUCCEEDED, first.message
    # The refused dispatch and the one sent at once without the ticket.
    assert sim.state.request_count(DISPATCH) == 2
    assert kinds(first)[:5] == [
        "requested",
        "gating",
        "gate_passed",
        LEFT_OUT,
        "dispatched",
    ]
    note = first.events.get(kind=LEFT_OUT)
    assert "GitHub refused the input ticket" in note.message
    assert "the change ticket is not shown in the run's name" in note.message
    assert "Adopting the reference workflows" in note.message
    assert note.detail == {"inputs": ["ticket"], "workflow_file": "deploy.yml"}
    dispatched = sim.state.get_run(REPO, github_id(first))
    assert "ticket" not in dispatched.inputs
    token = first.attempts.get().token
    assert dispatched.display_title == f"Deploy main [{token}]"

    second = deploy(env, sre)

    assert second.state == DeployRun.State.SUCCEEDED, second.message
    assert sim.state.request_count(DISPATCH) == 3  # no refusal this time
    note = second.events.get(kind=LEFT_OUT)
    assert note.message.startswith("sent without the input ticket")
    assert "not shown in the run's name" in note.message


def test_the_ticket_is_sent_again_once_the_memory_is_old_and_the_copy_gained_it(
    sim: Simulator, env: Environment, sre: User
) -> None:
    sim.set_workflow("deploy.yml", yaml=copy_without("ticket"))
    deploy(env, sre)
    # The team adopts the current workflow; the memory of the refusal ages out.
    sim.set_workflow("deploy.yml", yaml=SHIPPED.read_text())
    UndeclaredInput.objects.update(
        refused_at=F("refused_at") - REMEMBERED_FOR - timedelta(seconds=1)
    )

    run = deploy(env, sre)

    assert run.state == DeployRun.State.SUCCEEDED, run.message
    assert sim.state.request_count(DISPATCH) == 3
    assert LEFT_OUT not in kinds(run)
    dispatched = sim.state.get_run(REPO, github_id(run))
    assert dispatched.inputs["ticket"] == "INFRA-473"
    assert not UndeclaredInput.objects.exists()


def test_a_copy_without_the_sha_input_fails_the_deploy_saying_what_to_add(
    sim: Simulator, env: Environment, sre: User
) -> None:
    sim.set_workflow("deploy.yml", yaml=copy_without("sha"))

    run = deploy(env, sre)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.DISPATCH_REJECTED
    assert "deploy.yml does not declare the input sha" in run.message
    assert "on.workflow_dispatch.inputs" in run.message
    assert "Adopting the reference workflows" in run.message
    assert sim.state.request_count(DISPATCH) == 1  # nothing sent again
    assert not UndeclaredInput.objects.exists()
    assert run.attempts.get().github_run_id is None


def test_a_copy_lacking_sha_and_ticket_names_both_and_is_not_sent_again(
    sim: Simulator, env: Environment, sre: User
) -> None:
    sim.set_workflow("deploy.yml", yaml=copy_without("sha", "ticket"))

    run = deploy(env, sre)

    assert run.state == DeployRun.State.FAILED
    assert "does not declare the inputs sha and ticket" in run.message
    assert sim.state.request_count(DISPATCH) == 1


def test_a_copy_requiring_an_input_the_engine_does_not_send_fails_naming_it(
    sim: Simulator, env: Environment, sre: User
) -> None:
    extra = {"region": {"required": True, "type": "string"}}
    sim.set_workflow("deploy.yml", yaml=copy_without(add=extra))

    run = deploy(env, sre)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.DISPATCH_REJECTED
    assert "deploy.yml requires the input region" in run.message
    assert "give any other input a default or make it optional" in run.message
    assert sim.state.request_count(DISPATCH) == 1
