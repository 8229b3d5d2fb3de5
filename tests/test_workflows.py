"""The GitHub Actions workflows the project ships (the reference deploy workflows in
deploys/workflows/, and any other workflows/ folder): actionlint and zizmor find
nothing, they take exactly the inputs the engine dispatches, pin their deploy job to
the chosen runner in the chosen GitHub environment, and check out exactly the commit
they are given, refusing one that is not on the dispatched ref."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User

from controlplane.github import gateway_for
from deploys.engine.common import DISPATCH_INPUTS
from deploys.models import DeployRun
from deploys.models.runs import CORRELATION_TOKEN, new_correlation_token
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.conftest import ROOT, require_tool
from tests.deploying import REPO, Clock, drive, github_id, simulated_env

REFERENCE = ROOT / "deploys/workflows"
RUNNER_LABELS = ["self-hosted", "${{ inputs.runner }}"]
ENVIRONMENT = "${{ inputs.environment }}"
# `uses: owner/repo@<full commit sha> # vX.Y.Z`
PINNED_USES = re.compile(
    r"^\s*(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$"
)


def shipped_workflows() -> list[Path]:
    """Every workflow file in the repository, committed or not (ignored files aside):
    any YAML file in a workflows/ folder, as .ci/run lints them."""
    listed = subprocess.run(
        [
            "git",
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            ":(glob)**/workflows/*.yml",
            ":(glob)**/workflows/*.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed]


def reference_workflows() -> list[Path]:
    return sorted(REFERENCE.glob("*.yml"))


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def dispatch_inputs(doc: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True.
    triggers = doc.get("on", doc.get(True))
    assert isinstance(triggers, dict), "the workflow has no `on:` mapping"
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert isinstance(inputs, dict)
    return inputs


def pinned_jobs(doc: dict[Any, Any]) -> list[str]:
    return [
        name for name, job in doc["jobs"].items() if job["runs-on"] == RUNNER_LABELS
    ]


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in job["steps"] if s.get("name") == name]
    assert isinstance(found, dict)
    return found


def test_the_reference_workflows_are_shipped_and_linted() -> None:
    assert [p.name for p in reference_workflows()] == [
        "deploy-pipeline.yml",
        "deploy.yml",
    ]
    assert set(reference_workflows()) <= set(shipped_workflows())


def test_actionlint_finds_nothing() -> None:
    result = subprocess.run(
        [
            require_tool("actionlint"),
            "-no-color",
            "-shellcheck",
            require_tool("shellcheck"),
            *map(str, shipped_workflows()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_zizmor_finds_nothing_even_as_auditor() -> None:
    # Offline, without a GitHub token: the audits that would call GitHub are skipped.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}
    }
    result = subprocess.run(
        [
            require_tool("zizmor"),
            "--offline",
            "--persona",
            "auditor",
            "--color",
            "never",
            *map(str, shipped_workflows()),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout, result.stdout


@pytest.mark.parametrize("path", reference_workflows(), ids=lambda p: p.name)
def test_workflow_takes_exactly_the_dispatch_inputs_all_but_the_ticket_required(
    path: Path,
) -> None:
    inputs = dispatch_inputs(load(path))

    assert set(inputs) == set(DISPATCH_INPUTS)
    for name, spec in inputs.items():
        # The change ticket is empty for a deploy without one.
        assert spec["required"] is (name != "ticket"), name
        assert spec["type"] == "string", name
    assert inputs["ticket"]["default"] == ""


@pytest.mark.parametrize("path", reference_workflows(), ids=lambda p: p.name)
def test_one_job_is_pinned_to_the_chosen_runner_in_the_chosen_environment(
    path: Path,
) -> None:
    jobs = load(path)["jobs"]

    [pinned] = pinned_jobs(load(path))
    assert jobs[pinned]["environment"] == ENVIRONMENT
    # One deployment and one approval per run: only the pinned job declares it.
    assert [name for name, job in jobs.items() if "environment" in job] == [pinned]
    # The other jobs run on GitHub-hosted runners, never on another self-hosted one.
    for name, job in jobs.items():
        if name != pinned:
            assert "self-hosted" not in job["runs-on"], name


def test_the_pipeline_builds_then_deploys_on_the_chosen_runner_then_smoke_tests() -> (
    None
):
    jobs = load(REFERENCE / "deploy-pipeline.yml")["jobs"]

    assert jobs["build"]["runs-on"] == "ubuntu-latest"
    assert jobs["deploy"]["runs-on"] == RUNNER_LABELS
    assert jobs["deploy"]["needs"] == "build"
    assert jobs["smoke"]["needs"] == "deploy"


# The run-name's expression showing the ticket after the ref, when there is one.
TICKET_EXPRESSION = "${{ inputs.ticket && format(' {0}', inputs.ticket) || '' }}"


@pytest.mark.parametrize("ticket", ["", "INFRA-473"])
@pytest.mark.parametrize("path", reference_workflows(), ids=lambda p: p.name)
def test_run_name_carries_the_ticket_and_the_correlation_token(
    path: Path, ticket: str
) -> None:
    token = new_correlation_token()
    run_name = load(path)["run-name"]

    title = (
        run_name.replace("${{ github.ref_name }}", "main")
        .replace(TICKET_EXPRESSION, f" {ticket}" if ticket else "")
        .replace("${{ inputs.token }}", token)
    )

    # githubsim titles its runs the same way.
    assert title == f"Deploy main{' ' + ticket if ticket else ''} [{token}]"
    assert "${{" not in title
    match = CORRELATION_TOKEN.search(title)
    assert match is not None and match.group() == token


@pytest.mark.parametrize("path", shipped_workflows(), ids=lambda p: p.name)
def test_least_privilege_pinned_actions_and_no_expressions_in_scripts(
    path: Path,
) -> None:
    doc = load(path)

    assert doc["permissions"] == {}
    for name, job in doc["jobs"].items():
        assert job.get("permissions", {}) in ({}, {"contents": "read"}), name
        assert isinstance(job["timeout-minutes"], int), name
        for s in job["steps"]:
            # Inputs reach scripts through env:, never pasted into the script.
            assert "${{" not in s.get("run", ""), (name, s.get("name"))
            if s.get("uses", "").startswith("actions/checkout@"):
                # The token stays out of .git/config, out of reach of later steps.
                assert s["with"]["persist-credentials"] is False, (name, s["name"])
    uses = [line for line in path.read_text().splitlines() if "uses:" in line]
    # Only a workflow of scripts alone (the runner canary) uses no action.
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    assert uses or all("run" in s for s in steps)
    for line in uses:
        assert PINNED_USES.match(line), line


def test_actions_are_pinned_to_the_same_commit_in_every_workflow() -> None:
    pins: dict[str, set[str]] = {}
    for path in shipped_workflows():
        for line in path.read_text().splitlines():
            if match := re.search(r"uses: ([\w.-]+/[\w.-]+)@(\S+ # \S+)", line):
                pins.setdefault(match[1], set()).add(match[2])

    assert "actions/checkout" in pins
    assert {action: len(versions) for action, versions in pins.items()} == {
        action: 1 for action in pins
    }


# The "Check out" step's script, run for real against a git repository ---------------------


def checkout_script() -> str:
    single = step(load(REFERENCE / "deploy.yml")["jobs"]["deploy"], "Check out")["run"]
    build = load(REFERENCE / "deploy-pipeline.yml")["jobs"]["build"]
    assert step(build, "Check out")["run"] == single
    assert isinstance(single, str)
    return single


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


GIT_ENV = {
    "PATH": os.environ["PATH"],
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    """A repository as the checkout action leaves it: main at ``dispatched`` (an
    older release before it, a newer push after it) and a side branch; returns the
    commits by name and the repository's path under ``path``."""
    git(tmp_path, "init", "-q", "-b", "main")
    commits = {"path": str(tmp_path)}
    for name in ("release", "dispatched", "pushed_later"):
        (tmp_path / "version").write_text(name)
        git(tmp_path, "add", "version")
        git(tmp_path, "commit", "-q", "-m", name)
        commits[name] = git(tmp_path, "rev-parse", "HEAD")
    git(tmp_path, "checkout", "-q", "-b", "side", commits["release"])
    (tmp_path / "version").write_text("side")
    git(tmp_path, "commit", "-q", "-am", "side")
    commits["side"] = git(tmp_path, "rev-parse", "HEAD")
    git(tmp_path, "checkout", "-q", "--detach", commits["dispatched"])
    return commits


def run_checkout(repo: dict[str, str], sha: str) -> subprocess.CompletedProcess[str]:
    # As GitHub runs a `shell: bash` step.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", checkout_script()],
        cwd=repo["path"],
        env={
            **GIT_ENV,
            "DEPLOY_SHA": sha,
            "GITHUB_SHA": repo["dispatched"],
            "GITHUB_REF_NAME": "main",
        },
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("commit", ["dispatched", "release"])
def test_checkout_deploys_the_given_commit_of_the_dispatched_ref(
    repo: dict[str, str], commit: str
) -> None:
    result = run_checkout(repo, repo[commit])

    assert result.returncode == 0, result.stdout + result.stderr
    assert git(Path(repo["path"]), "rev-parse", "HEAD") == repo[commit]
    assert (Path(repo["path"]) / "version").read_text() == commit


def test_checkout_refuses_a_commit_that_is_not_on_the_dispatched_ref(
    repo: dict[str, str],
) -> None:
    result = run_checkout(repo, repo["side"])

    assert result.returncode == 1
    assert (
        f"::error title=Commit not on main::commit {repo['side']} is not on main "
        f"(at {repo['dispatched']})" in result.stdout
    )
    assert git(Path(repo["path"]), "rev-parse", "HEAD") == repo["dispatched"]


def test_checkout_refuses_a_commit_the_repository_does_not_have(
    repo: dict[str, str],
) -> None:
    result = run_checkout(repo, "0" * 40)

    assert result.returncode == 1
    assert f"commit {'0' * 40} is not in this repository" in result.stdout


@pytest.mark.parametrize(
    "sha",
    ["abc1234", "", "main", "A" * 40, "$(touch injected)" + "0" * 24],
)
def test_checkout_refuses_anything_but_a_full_sha(
    repo: dict[str, str], sha: str
) -> None:
    result = run_checkout(repo, sha)

    assert result.returncode == 1
    assert "must be a full commit SHA" in result.stdout
    assert not (Path(repo["path"]) / "injected").exists()
    assert git(Path(repo["path"]), "rev-parse", "HEAD") == repo["dispatched"]


# What the engine sends ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.sim(time_scale=600, pickup_delay=5, job_duration=20, connect=True)
def test_the_engine_dispatches_exactly_the_inputs_the_workflows_declare(
    sim: Simulator, sre: User
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", idempotency_key="k1").run

    run = drive(run, lambda r: r.attempts.exclude(github_run_id=None).exists(), Clock())

    dispatched = sim.state.get_run(REPO, github_id(run))
    assert set(dispatched.inputs) == set(DISPATCH_INPUTS)
    assert dispatched.inputs["sha"] == run.sha
    assert dispatched.inputs["environment"] == env.name
    assert dispatched.inputs["ticket"] == ""
    assert dispatched.display_title == f"Deploy main [{run.attempts.get().token}]"


@pytest.mark.django_db
@pytest.mark.sim(time_scale=600, pickup_delay=5, job_duration=20, connect=True)
def test_the_run_name_shows_the_change_ticket_and_correlation_still_works(
    sim: Simulator, sre: User
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", "INFRA-473").run

    run = drive(run, lambda r: r.attempts.exclude(github_run_id=None).exists(), Clock())

    attempt = run.attempts.get()
    dispatched = sim.state.get_run(REPO, github_id(run))
    assert dispatched.inputs["ticket"] == "INFRA-473"
    assert dispatched.display_title == f"Deploy main INFRA-473 [{attempt.token}]"
    # The token lookup that recovers a lost dispatch answer finds the same run.
    found = gateway_for(REPO).find_run_by_token(
        env.workflow_file, attempt.token, run.created_at - timedelta(minutes=1)
    )
    assert found is not None and found.id == dispatched.id


@pytest.mark.django_db
@pytest.mark.sim(time_scale=600, pickup_delay=5, job_duration=20, connect=True)
def test_a_ticket_with_characters_github_must_not_see_is_never_sent(
    sim: Simulator, sre: User
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main").run
    # Written before the request checked the characters (an older deploy).
    DeployRun.objects.filter(pk=run.pk).update(change_ticket="X ${{ evil }}")

    run = drive(run, lambda r: r.attempts.exclude(github_run_id=None).exists(), Clock())

    dispatched = sim.state.get_run(REPO, github_id(run))
    assert dispatched.inputs["ticket"] == ""
    assert "evil" not in dispatched.display_title
