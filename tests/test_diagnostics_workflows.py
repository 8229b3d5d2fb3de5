"""The diagnostics and agent-install workflows the control plane dispatches: they take
exactly the inputs it sends, pin their one job to the chosen runner in the runner's
own GitHub environment, carry the token in the run's name, hand the scripts the
variables they read, and keep the heartbeat token out of the log. (actionlint,
zizmor, permissions and pins: tests/test_workflows.py, which lints every workflows/
folder.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from diagnostics.domain import workflow_for
from diagnostics.models import HostRun
from tests.conftest import ROOT

FOLDER = ROOT / "diagnostics/workflows"
FILES = {
    HostRun.Kind.DIAGNOSTICS: FOLDER / "runner-diagnostics.yml",
    HostRun.Kind.AGENT_INSTALL: FOLDER / "runner-agent.yml",
}


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


CANARY = FOLDER / "runner-canary.yml"


def test_the_control_plane_dispatches_the_shipped_file_names() -> None:
    assert sorted(p.name for p in FOLDER.glob("*.yml")) == sorted(
        [*(p.name for p in FILES.values()), CANARY.name]
    )
    for kind, path in FILES.items():
        assert workflow_for(kind) == path.name
    assert workflow_for(HostRun.Kind.CANARY) == CANARY.name


def test_the_canary_is_one_short_job_pinned_to_the_runner_without_secrets() -> None:
    doc = load(CANARY)
    inputs = doc[True]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"runner", "token"}
    assert all(spec["required"] for spec in inputs.values())
    assert "${{ inputs.token }}" in doc["run-name"]
    (job,) = doc["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "${{ inputs.runner }}"]
    # No GitHub environment: no deployment, no protection rule to wait on, no secret.
    assert "environment" not in job
    assert "secrets." not in CANARY.read_text()
    assert job["permissions"] == {}
    assert job["timeout-minutes"] <= 5
    # The step checks it ran where it was pinned.
    (step,) = job["steps"]
    assert step["env"] == {"EXPECTED_RUNNER": "${{ inputs.runner }}"}
    assert "RUNNER_NAME" in step["run"]


@pytest.mark.parametrize("path", FILES.values(), ids=lambda p: p.name)
def test_one_job_pinned_to_the_runner_in_its_environment(path: Path) -> None:
    doc = load(path)
    inputs = doc[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True
    # What diagnostics.domain.dispatch sends, all required.
    assert set(inputs) == {"runner", "token"}
    assert all(spec["required"] for spec in inputs.values())
    assert "${{ inputs.token }}" in doc["run-name"]
    (job,) = doc["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "${{ inputs.runner }}"]
    assert job["environment"] == "runner-${{ inputs.runner }}"
    assert job["timeout-minutes"] <= 10


@pytest.mark.parametrize(
    ("path", "script"),
    [
        (FILES[HostRun.Kind.DIAGNOSTICS], ROOT / "agent/runner-diagnostics"),
        (FILES[HostRun.Kind.AGENT_INSTALL], ROOT / "agent/install-runner-heartbeat"),
    ],
    ids=["diagnostics", "install"],
)
def test_the_step_runs_the_shipped_script_with_the_variables_it_reads(
    path: Path, script: Path
) -> None:
    (job,) = load(path)["jobs"].values()
    step = job["steps"][-1]
    assert f".github/runner-control-plane/{script.name}" in step["run"]
    assert step["env"]["HEARTBEAT_TOKEN"] == "${{ secrets.RUNNER_HEARTBEAT_TOKEN }}"
    text = script.read_text()
    for name in step["env"]:
        assert name in text, f"{script.name} does not read {name}"
    # The secret is masked before anything runs and never echoed otherwise.
    lines = [line.strip() for line in step["run"].splitlines()]
    mentions = [line for line in lines if "HEARTBEAT_TOKEN" in line]
    assert mentions in ([], ['echo "::add-mask::${HEARTBEAT_TOKEN}"'])
    if mentions:
        assert lines[0] == mentions[0]
    checkout = job["steps"][0]
    assert checkout["with"]["sparse-checkout"] == ".github/runner-control-plane"


def test_scripts_never_print_the_token() -> None:
    installer = (ROOT / "agent/install-runner-heartbeat").read_text()
    printing = [
        line
        for line in installer.splitlines()
        if re.search(r"\b(echo|say|fail)\b.*\$token", line)
    ]
    assert printing == []
    diagnostics = (ROOT / "agent/runner-diagnostics").read_text()
    assert not re.search(r"print\([^)]*secret", diagnostics)
