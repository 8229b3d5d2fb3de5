"""The simulator checks a dispatch's inputs against the loaded workflow file as GitHub
does: an input the file does not declare, or a required one without a default left
out, is refused with 422 and nothing is created; a workflow without a loaded file
takes any inputs, as before."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from githubsim import Simulator
from tests.simhttp import REPO, get, post

pytestmark = pytest.mark.sim(pickup_delay=5)

# A copy of the reference deploy.yml made before it gained the ``ticket`` input.
OLD_COPY = """
name: Deploy
on:
  workflow_dispatch:
    inputs:
      runner: {required: true, type: string}
      token: {required: true, type: string}
      sha: {required: true, type: string}
      environment: {required: true, default: production, type: string}
      note: {required: false, type: string}
jobs:
  deploy:
    runs-on: [self-hosted, "${{ inputs.runner }}"]
    steps:
      - run: ./deploy.sh
"""
SENT = {"runner": "prod-1", "token": "t-1", "sha": "", "environment": "production"}


def dispatch(sim: Simulator, inputs: dict[str, Any]) -> requests.Response:
    return post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {"ref": "main", "inputs": inputs, "return_run_details": True},
    )


def runs(sim: Simulator) -> int:
    listed = get(sim, f"{REPO}/actions/workflows/deploy.yml/runs").json()
    return int(listed["total_count"])


def load(sim: Simulator, text: str) -> dict[str, Any]:
    response = requests.put(
        f"{sim.url}/_sim{REPO}/workflows/deploy.yml", json={"yaml": text}, timeout=10
    )
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def assert_refused(response: requests.Response, message: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"] == message
    assert body["documentation_url"].startswith("https://docs.github.com/")


def test_an_input_the_file_does_not_declare_is_refused_and_creates_nothing(sim):
    load(sim, OLD_COPY)

    response = dispatch(sim, {**SENT, "ticket": "INFRA-473", "extra": "x"})

    assert_refused(response, 'Unexpected inputs provided: ["ticket", "extra"]')
    assert runs(sim) == 0


def test_a_required_input_without_a_default_must_be_sent(sim):
    load(sim, OLD_COPY)
    without_sha = {k: v for k, v in SENT.items() if k != "sha"}

    response = dispatch(sim, without_sha)

    assert_refused(response, "Required input 'sha' not provided")
    assert runs(sim) == 0


def test_inputs_with_a_default_or_not_required_may_be_left_out(sim):
    load(sim, OLD_COPY)
    without_environment = {k: v for k, v in SENT.items() if k != "environment"}

    response = dispatch(sim, without_environment)

    assert response.status_code == 200, response.text
    assert runs(sim) == 1


def test_a_dispatch_trigger_without_inputs_takes_none(sim):
    load(sim, "on: [push, workflow_dispatch]\njobs:\n  a:\n    runs-on: [x]\n")

    assert_refused(
        dispatch(sim, {"runner": "r"}), 'Unexpected inputs provided: ["runner"]'
    )
    assert dispatch(sim, {}).status_code == 200


@pytest.mark.parametrize(
    "define",
    [
        pytest.param(None, id="no definition loaded"),
        pytest.param({"jobs": [{"name": "d", "runs_on": ["x"]}]}, id="a job list"),
        pytest.param(
            {"yaml": "on: push\njobs:\n  d:\n    runs-on: [x]\n"},
            id="a file without workflow_dispatch",
        ),
    ],
)
def test_without_declared_inputs_any_inputs_are_taken(sim, define):
    if define is not None:
        load(sim, OLD_COPY)  # what a later definition replaces
        path = f"{sim.url}/_sim{REPO}/workflows/deploy.yml"
        assert requests.put(path, json=define, timeout=10).status_code == 200

    response = dispatch(sim, {"anything": "goes", "ticket": "INFRA-473"})

    assert response.status_code == 200, response.text


def test_the_control_api_shows_the_declared_inputs(sim):
    view = load(sim, OLD_COPY)

    assert view["inputs"][:2] == [
        {"name": "runner", "required": True, "default": None},
        {"name": "token", "required": True, "default": None},
    ]
    assert {"name": "environment", "required": True, "default": "production"} in (
        view["inputs"]
    )
    jobs_only = requests.put(
        f"{sim.url}/_sim{REPO}/workflows/deploy.yml",
        json={"jobs": [{"name": "d", "runs_on": ["x"]}]},
        timeout=10,
    )
    assert jobs_only.json()["inputs"] is None


def test_a_malformed_inputs_section_is_refused_when_loaded(sim):
    text = (
        "on:\n  workflow_dispatch:\n    inputs: [a, b]\njobs:\n  d:\n    runs-on: x\n"
    )
    response = requests.put(
        f"{sim.url}/_sim{REPO}/workflows/deploy.yml", json={"yaml": text}, timeout=10
    )

    assert response.status_code == 422
    assert "on.workflow_dispatch.inputs must be a mapping" in response.json()["message"]
