"""The control API under ``/_sim/``: inspect the simulator and inject faults.

JSON in and out, no GitHub authentication, no rate-limit budget, no injected faults.
"""

from __future__ import annotations

from typing import Any

from githubsim.api import commits, environments, protection_rules
from githubsim.commands import parse_command
from githubsim.errors import ApiError
from githubsim.routing import Reply, Request, Router
from githubsim.workflows import outcome, parse_definition

router = Router()
router.include(commits.control)


def number(body: dict[str, Any], key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(422, f"{key} must be a number")
    return float(value)


@router.add("GET", "/_sim/state")
def state_summary(request: Request) -> Reply:
    return Reply(body=request.sim.state.summary())


@router.add("POST", "/_sim/reset")
def reset(request: Request) -> Reply:
    request.sim.reset()
    return Reply(body=request.sim.state.summary())


@router.add("GET", "/_sim/requests")
def request_counts(request: Request) -> Reply:
    return Reply(body=request.sim.state.request_counts())


@router.add("GET", "/_sim/runners")
def list_runners(request: Request) -> Reply:
    """All runners (or one page of them: ``?page=&per_page=`` up to 1000)."""
    state = request.sim.state
    page = int(request.query.get("page", "1"))
    per_page = min(1000, int(request.query.get("per_page", "1000")))
    with state.lock:
        runners = state.runners()
        chunk = runners[(page - 1) * per_page : page * per_page]
        return Reply(
            body={
                "total_count": len(runners),
                "runners": [state.runner_view(r) for r in chunk],
            }
        )


@router.add("POST", "/_sim/runners")
def add_runners(request: Request) -> Reply:
    """``{"name": "x", "labels": [...]}`` adds one; ``{"count": N, "prefix": "p"}`` many."""
    body = request.json_object()
    labels = body.get("labels") or []
    if isinstance(labels, str):
        labels = [label for label in labels.split(",") if label]
    state = request.sim.state
    with state.lock:
        if "name" in body:
            added = [state.add_runner(str(body["name"]), labels)]
        else:
            count = int(number(body, "count", 1))
            added = state.add_runners(
                count, str(body.get("prefix") or "runner"), labels
            )
        return Reply(
            status=201,
            body={"added": len(added), "names": [r.name for r in added[:1000]]},
        )


@router.add("GET", "/_sim/runners/{name}")
def get_runner(request: Request) -> Reply:
    state = request.sim.state
    return Reply(body=state.runner_view(state.runner(request.params["name"])))


@router.add("DELETE", "/_sim/runners/{name}")
def remove_runner(request: Request) -> Reply:
    request.sim.state.remove_runner(request.params["name"])
    return Reply(status=204)


@router.add("POST", "/_sim/runners/{name}/{action}")
def runner_action(request: Request) -> Reply:
    state = request.sim.state
    name = request.params["name"]
    body = request.json_object()
    action = request.params["action"]
    if action == "kill":
        runner = state.kill(name)
    elif action == "revive":
        runner = state.revive(name)
    elif action == "stop-heartbeats":
        runner = state.set_heartbeats(name, False)
    elif action == "start-heartbeats":
        runner = state.set_heartbeats(name, True)
    elif action == "refuse-jobs":
        runner = state.set_takes_jobs(name, False)
    elif action == "take-jobs":
        runner = state.set_takes_jobs(name, True)
    elif action == "fill-disk":
        runner = state.fill_disk(name, number(body, "free_percent", 3.0))
    elif action == "load":
        runner = state.set_load(name, number(body, "load1"))
    elif action == "agent":
        follows = body.get("follows_interval", True)
        if not isinstance(follows, bool):
            raise ApiError(422, "follows_interval must be true or false")
        runner = state.set_heartbeat_agent(name, follows)
    elif action == "version":
        runner = state.set_runner_version(name, str(body.get("version") or ""))
    elif action == "labels":
        runner = state.set_runner_labels(name, labels_of(body, "labels"))
    elif action == "token":
        runner = state.set_heartbeat_token(name, str(body.get("token") or ""))
    elif action == "remove":
        state.remove_runner(name)
        return Reply(status=204)
    else:
        raise ApiError(404, f"Unknown runner action {action!r}")
    return Reply(body=state.runner_view(runner))


@router.add("GET", "/_sim/jobs")
def list_jobs(request: Request) -> Reply:
    state = request.sim.state
    status = request.query.get("status")
    with state.lock:
        jobs = [j for j in state.jobs() if status is None or j.status == status]
        return Reply(body={"jobs": [state.job_view(j) for j in jobs[-500:]]})


@router.add("GET", "/_sim/jobs/{job_id}")
def get_job(request: Request) -> Reply:
    state = request.sim.state
    return Reply(body=state.job_view(state.get_job(None, request.int_param("job_id"))))


@router.add("POST", "/_sim/jobs/{job_id}/lose")
def lose_job(request: Request) -> Reply:
    state = request.sim.state
    return Reply(body=state.job_view(state.lose_job(request.int_param("job_id"))))


@router.add("GET", "/_sim/runs/{run_id}")
def get_run(request: Request) -> Reply:
    """A run with all its jobs and the jobs still blocked on ``needs``."""
    state = request.sim.state
    with state.lock:
        run = state.run_by_id(request.int_param("run_id"))
        return Reply(body=state.run_view(run))


# Workflow definitions ---------------------------------------------------------------------

WORKFLOW = "/_sim/repos/{owner}/{repo}/workflows/{file}"


def workflow_view(request: Request) -> dict[str, Any]:
    state = request.sim.state
    name = f"{request.params['owner']}/{request.params['repo']}"
    flow = state.workflow(name, request.params["file"])
    return {
        "id": flow.id,
        "path": flow.path,
        "name": flow.name,
        "jobs": [spec.as_dict() for spec in flow.jobs],
        # null: no file loaded, so dispatches may send any inputs.
        "inputs": None if flow.inputs is None else [i.as_dict() for i in flow.inputs],
    }


@router.add("GET", WORKFLOW)
def get_workflow(request: Request) -> Reply:
    return Reply(body=workflow_view(request))


@router.add("PUT", WORKFLOW)
def put_workflow(request: Request) -> Reply:
    """The workflow's jobs (and, from a file, the inputs a dispatch is checked
    against) for later runs: ``{"yaml": "<file text>"}`` or
    ``{"jobs": [{"name", "runs_on", "needs", "environment", "duration", "outcome"}]}``."""
    definition = parse_definition(request.json_object())
    params = request.params
    request.sim.state.set_workflow(
        f"{params['owner']}/{params['repo']}",
        params["file"],
        definition.jobs,
        definition.name,
        definition.inputs,
    )
    return Reply(body=workflow_view(request))


@router.add("POST", WORKFLOW + "/jobs/{job}")
def set_workflow_job(request: Request) -> Reply:
    """Change one job's ``duration`` (seconds, null for the default) or ``outcome``
    (success, failure, null for the default) for later runs."""
    body = request.json_object()
    state = request.sim.state
    with state.lock:
        flow = state.workflow(
            f"{request.params['owner']}/{request.params['repo']}",
            request.params["file"],
        )
        job = request.params["job"]
        spec = next((s for s in flow.jobs if s.name == job), None)
        if spec is None:
            raise ApiError(404, f"{flow.path} has no job {job!r}")
        unknown = set(body) - {"duration", "outcome"}
        if unknown:
            raise ApiError(422, f"unknown fields {sorted(unknown)}: duration, outcome")
        if "duration" in body:
            spec.duration = (
                None if body["duration"] is None else number(body, "duration")
            )
            if spec.duration is not None and spec.duration < 0:
                raise ApiError(422, "duration cannot be negative")
        if "outcome" in body:
            spec.outcome = outcome(body["outcome"], job)
    return Reply(body=workflow_view(request))


@router.add("PUT", WORKFLOW + "/command")
def put_workflow_command(request: Request) -> Reply:
    """What the workflow's self-hosted jobs run from now on (:mod:`githubsim.commands`):
    ``{"argv": [...], "env": {...}, "hosts_dir": "...", "timeout": seconds}``; a body
    of ``{"argv": null}`` goes back to durations and outcomes."""
    body = request.json_object()
    command = None if body.get("argv", ...) is None else parse_command(body)
    state = request.sim.state
    with state.lock:
        flow = state.workflow(
            f"{request.params['owner']}/{request.params['repo']}",
            request.params["file"],
        )
        flow.command = command
    return Reply(
        body={**workflow_view(request), "command": command and command.as_dict()}
    )


# CI traffic ------------------------------------------------------------------------------


@router.add("POST", "/_sim/traffic")
def start_traffic(request: Request) -> Reply:
    """Background CI jobs: ``{"runners": [names]}`` one on each, or ``{"labels": [...],
    "count": N}`` on any matching runners; ``duration`` seconds, or until stopped."""
    body = request.json_object()
    state = request.sim.state
    runners = labels_of(body, "runners")
    labels = labels_of(body, "labels")
    duration = None if body.get("duration") is None else number(body, "duration")
    run = state.start_traffic(
        str(body.get("repository") or state.default_repository),
        runners=runners,
        labels=labels,
        count=int(number(body, "count", 1)),
        duration=duration,
    )
    return Reply(status=201, body=state.run_view(run))


@router.add("DELETE", "/_sim/traffic")
def stop_traffic(request: Request) -> Reply:
    return Reply(body={"stopped_runs": request.sim.state.stop_traffic()})


def labels_of(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(422, f"{key} must be a list of strings")
    return value


@router.add("GET", "/_sim/faults")
def get_faults(request: Request) -> Reply:
    return Reply(body=request.sim.state.faults.as_dict())


@router.add("POST", "/_sim/faults")
def set_faults(request: Request) -> Reply:
    """Set some faults; ``{"clear": true}`` first clears them all."""
    body = dict(request.json_object())
    state = request.sim.state
    if body.pop("clear", False):
        request.sim.clear_faults()
    return Reply(body=state.set_faults(**body).as_dict())


@router.add("GET", "/_sim/config")
def get_config(request: Request) -> Reply:
    state = request.sim.state
    return Reply(body={**state.config.as_dict(), "time_scale": state.clock.time_scale})


@router.add("POST", "/_sim/config")
def set_config(request: Request) -> Reply:
    body = dict(request.json_object())
    sim = request.sim
    if "webhook_url" in body or "webhook_secret" in body:
        sim.set_webhook(
            str(body.pop("webhook_url", sim.state.config.webhook_url)),
            str(body.pop("webhook_secret", sim.state.config.webhook_secret)),
        )
    config = sim.state.set_config(**body)
    return Reply(body={**config.as_dict(), "time_scale": sim.clock.time_scale})


@router.add("GET", "/_sim/webhooks")
def webhook_deliveries(request: Request) -> Reply:
    return Reply(body={"deliveries": request.sim.webhooks.recent()})


@router.add("GET", "/_sim/exporter/{name}/metrics")
def exporter(request: Request) -> Reply:
    text = request.sim.state.exporter_metrics(request.params["name"])
    if text is None:
        # A dead host: the server closes the connection without answering.
        return Reply(status=0)
    return Reply(body=text.encode(), content_type="text/plain; version=0.0.4")


router.include(environments.control)
router.include(protection_rules.control)
