"""Workflow definitions: the jobs of a workflow file, and expressions in them.

The simulator reads what decides where and when jobs run: ``jobs.<id>.runs-on``,
``needs`` and ``environment``, and the inputs a dispatch may send
(``on.workflow_dispatch.inputs``), which it checks as GitHub does. Steps are not run; a job's duration and outcome come from
the control API or the simulator's settings. Expressions are resolved from the dispatch
inputs only (``${{ inputs.NAME }}`` or ``${{ github.event.inputs.NAME }}``); any other
expression is kept as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from githubsim.errors import ApiError
from githubsim.models import JobSpec, WorkflowInput

OUTCOMES = ("success", "failure")
EXPRESSION = re.compile(
    r"\$\{\{\s*(?:github\.event\.)?inputs\.([A-Za-z_][\w-]*)\s*\}\}"
)
JOB_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass
class Definition:
    """What a workflow file (or a control-API job list) defines."""

    name: str | None
    jobs: list[JobSpec]
    # None for a job list, or a file without a workflow_dispatch trigger.
    inputs: list[WorkflowInput] | None = None


def invalid(message: str) -> ApiError:
    return ApiError(422, message)


def resolve(text: str, inputs: Mapping[str, Any]) -> str:
    """``text`` with its input expressions replaced by the dispatch inputs."""
    return EXPRESSION.sub(lambda m: str(inputs.get(m.group(1), "") or ""), text)


def resolved(spec: JobSpec, inputs: Mapping[str, Any]) -> JobSpec:
    """A copy of ``spec`` for one run: expressions resolved, empty labels dropped."""
    labels = [resolve(label, inputs) for label in spec.runs_on]
    environment = resolve(spec.environment, inputs) if spec.environment else None
    return JobSpec(
        name=spec.name,
        runs_on=[label for label in labels if label],
        needs=list(spec.needs),
        environment=environment or None,
        duration=spec.duration,
        outcome=spec.outcome,
    )


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise invalid(f"{what} must be a string or a list of strings")


def _runs_on(value: Any, job: str) -> list[str]:
    if isinstance(value, dict):
        # ``runs-on: {group: ..., labels: [...]}``: the labels decide the runner.
        return _strings(value.get("labels") or [], f"jobs.{job}.runs-on.labels")
    return _strings(value, f"jobs.{job}.runs-on")


def _environment(value: Any, job: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("name")
    if not isinstance(value, str) or not value:
        raise invalid(f"jobs.{job}.environment must be a name or {{name: ...}}")
    return value


def parse_yaml(text: str) -> Definition:
    """The workflow's ``name``, jobs and inputs, from the text of a workflow file."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise invalid(f"yaml is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("jobs"), dict):
        raise invalid("yaml must be a workflow with a jobs: mapping")
    specs = []
    for job, body in document["jobs"].items():
        if not isinstance(body, dict):
            raise invalid(f"jobs.{job} must be a mapping")
        if "runs-on" not in body:
            raise invalid(f"jobs.{job} has no runs-on")
        specs.append(
            JobSpec(
                name=str(job),
                runs_on=_runs_on(body["runs-on"], str(job)),
                needs=_strings(body.get("needs") or [], f"jobs.{job}.needs"),
                environment=_environment(body.get("environment"), str(job)),
            )
        )
    name = document.get("name")
    return Definition(
        name if isinstance(name, str) and name else None,
        checked(specs),
        dispatch_inputs(document),
    )


def dispatch_inputs(document: Mapping[Any, Any]) -> list[WorkflowInput] | None:
    """The inputs ``on.workflow_dispatch.inputs`` declares: ``[]`` for a trigger
    without inputs (GitHub then refuses any), None for a file without the trigger."""
    # YAML 1.1 (PyYAML) reads the key ``on`` as the boolean True.
    triggers = document.get("on", document.get(True))
    if isinstance(triggers, str):
        triggers = [triggers]
    if isinstance(triggers, list):
        return [] if "workflow_dispatch" in triggers else None
    if not isinstance(triggers, dict) or "workflow_dispatch" not in triggers:
        return None
    trigger = triggers["workflow_dispatch"] or {}
    if not isinstance(trigger, dict):
        raise invalid("on.workflow_dispatch must be a mapping")
    declared = trigger.get("inputs") or {}
    if not isinstance(declared, dict):
        raise invalid("on.workflow_dispatch.inputs must be a mapping of input names")
    inputs = []
    for name, spec in declared.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise invalid(f"on.workflow_dispatch.inputs.{name} must be a mapping")
        default = spec.get("default")
        inputs.append(
            WorkflowInput(
                str(name),
                spec.get("required") is True,
                None if default is None else str(default),
            )
        )
    return inputs


def check_inputs(
    declared: list[WorkflowInput] | None, inputs: Mapping[str, Any]
) -> None:
    """Refuse a dispatch's inputs as GitHub does, with its messages: a name the
    file does not declare, then a required input without a default left out. Not
    checked when no file was loaded (``declared`` is None)."""
    if declared is None:
        return
    names = {spec.name for spec in declared}
    unexpected = [name for name in inputs if name not in names]
    if unexpected:
        raise invalid(f"Unexpected inputs provided: {json.dumps(unexpected)}")
    for spec in declared:
        if spec.required and spec.default is None and spec.name not in inputs:
            raise invalid(f"Required input '{spec.name}' not provided")


def _number(item: Mapping[str, Any], key: str, job: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise invalid(f"jobs[{job}].{key} must be a non-negative number of seconds")
    return float(value)


def parse_job_list(items: Any) -> list[JobSpec]:
    """Jobs given as ``[{"name", "runs_on", "needs", "environment", "duration",
    "outcome"}]``."""
    if not isinstance(items, list) or not items:
        raise invalid("jobs must be a non-empty list of job objects")
    specs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid(f"jobs[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"jobs[{index}].name is required")
        environment = item.get("environment")
        if environment is not None and (
            not isinstance(environment, str) or not environment
        ):
            raise invalid(f"jobs[{name}].environment must be a name or null")
        specs.append(
            JobSpec(
                name=name,
                runs_on=_strings(item.get("runs_on"), f"jobs[{name}].runs_on"),
                needs=_strings(item.get("needs") or [], f"jobs[{name}].needs"),
                environment=environment,
                duration=_number(item, "duration", name),
                outcome=outcome(item.get("outcome"), name),
            )
        )
    return checked(specs)


def outcome(value: Any, job: str) -> str | None:
    if value is not None and value not in OUTCOMES:
        raise invalid(f"jobs[{job}].outcome must be success, failure or null")
    return None if value is None else str(value)


def checked(specs: list[JobSpec]) -> list[JobSpec]:
    """Unique names, known ``needs``, labels present and no cycles, as GitHub insists."""
    names = [spec.name for spec in specs]
    if not specs:
        raise invalid("a workflow needs at least one job")
    for spec in specs:
        if not JOB_ID.match(spec.name):
            raise invalid(f"job name {spec.name!r} must match {JOB_ID.pattern}")
        if names.count(spec.name) > 1:
            raise invalid(f"job {spec.name!r} is defined twice")
        if not spec.runs_on:
            raise invalid(f"job {spec.name!r} has no runs-on labels")
        for need in spec.needs:
            if need not in names:
                raise invalid(f"job {spec.name!r} needs unknown job {need!r}")
    done: set[str] = set()
    remaining = list(specs)
    while remaining:
        ready = [s for s in remaining if set(s.needs) <= done]
        if not ready:
            cycle = ", ".join(s.name for s in remaining)
            raise invalid(f"the needs of jobs {cycle} form a cycle")
        done.update(s.name for s in ready)
        remaining = [s for s in remaining if s.name not in done]
    return specs


def parse_definition(body: Mapping[str, Any]) -> Definition:
    """A control-API body: ``{"yaml": "<workflow file>"}`` or ``{"jobs": [...]}``."""
    if "yaml" in body:
        if not isinstance(body["yaml"], str):
            raise invalid("yaml must be the workflow file's text")
        return parse_yaml(body["yaml"])
    if "jobs" in body:
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise invalid("name must be a string")
        return Definition(name, parse_job_list(body["jobs"]))
    raise invalid('send {"yaml": "<workflow file text>"} or {"jobs": [...]}')


# The shape of the reference multi-job deploy workflow, as a job list for
# ``PUT /_sim/repos/{owner}/{repo}/workflows/{file}``: build on a GitHub-hosted runner,
# deploy on the pinned self-hosted runner in the dispatch's environment, then smoke-test.
BUILD_DEPLOY_SMOKE: list[dict[str, Any]] = [
    {"name": "build", "runs_on": ["ubuntu-latest"]},
    {
        "name": "deploy",
        "runs_on": ["self-hosted", "${{ inputs.runner }}"],
        "needs": ["build"],
        "environment": "${{ inputs.environment }}",
    },
    {"name": "smoke", "runs_on": ["ubuntu-latest"], "needs": ["deploy"]},
]
