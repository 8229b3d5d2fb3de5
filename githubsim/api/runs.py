"""Workflows, dispatches, runs and their jobs."""

from __future__ import annotations

from githubsim import shapes
from githubsim.api.common import REPO, full_name
from githubsim.clock import parse_iso
from githubsim.errors import invalid
from githubsim.models import Run
from githubsim.routing import Reply, Request, Router

router = Router()


# Workflows and dispatches ---------------------------------------------------------------


@router.add("GET", REPO + "/actions/workflows/{workflow_id}")
def get_workflow(request: Request) -> Reply:
    flow = request.sim.state.workflow(full_name(request), request.params["workflow_id"])
    return Reply(body=shapes.workflow(request.base, flow))


@router.add("POST", REPO + "/actions/workflows/{workflow_id}/dispatches")
def dispatch(request: Request) -> Reply:
    state = request.sim.state
    name = full_name(request)
    body = request.json_object()
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise invalid("Invalid request: ref is required", "ref", "missing_field")
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise invalid("Invalid request: inputs must be an object", "inputs")
    details = body.get("return_run_details", False)
    if "return_run_details" in body and state.faults.reject_return_run_details:
        # Older GitHub Enterprise Server versions do not know the field.
        raise invalid(
            'Invalid request.\n\n"return_run_details" is not a permitted key.',
            "return_run_details",
        )
    run = state.dispatch(name, request.params["workflow_id"], ref, inputs)
    if details is not True:
        return Reply(status=204)
    return Reply(
        status=200,
        body={
            "workflow_run_id": run.id,
            "run_url": f"{request.base}/repos/{name}/actions/runs/{run.id}",
            "html_url": f"{request.base}/{name}/actions/runs/{run.id}",
        },
    )


# Runs and jobs -----------------------------------------------------------------------


def created_filter(expression: str) -> tuple[float, float]:
    """GitHub's ``created`` search syntax: ``>=T``, ``>T``, ``<=T``, ``<T``, ``A..B``, ``D``."""
    low, high = float("-inf"), float("inf")
    try:
        if ".." in expression:
            start, end = expression.split("..", 1)
            if start != "*":
                low = parse_iso(start)
            if end != "*":
                high = parse_iso(end) + (86400 if len(end) == 10 else 0)
        elif expression.startswith(">="):
            low = parse_iso(expression[2:])
        elif expression.startswith(">"):
            low = parse_iso(expression[1:]) + 1
        elif expression.startswith("<="):
            high = parse_iso(expression[2:]) + (86400 if len(expression) == 12 else 0)
        elif expression.startswith("<"):
            high = parse_iso(expression[1:]) - 1
        else:
            low = parse_iso(expression)
            high = low + (86400 if len(expression) == 10 else 1)
    except ValueError:
        raise invalid(f"Invalid created filter {expression!r}", "created") from None
    return low, high


def list_runs_reply(request: Request, runs: list[Run]) -> Reply:
    query = request.query
    exclude = query.get("exclude_pull_requests")
    if exclude is not None and exclude not in ("true", "false"):
        raise invalid(
            "Invalid request.\n\nFor 'properties/exclude_pull_requests', "
            f'"{exclude}" is not a boolean.',
            "exclude_pull_requests",
        )
    if "status" in query:
        runs = [r for r in runs if query["status"] in (r.status, r.conclusion)]
    if "event" in query:
        runs = [r for r in runs if r.event == query["event"]]
    if "branch" in query:
        runs = [r for r in runs if r.ref == query["branch"]]
    if "head_sha" in query:
        runs = [r for r in runs if r.head_sha == query["head_sha"]]
    if "created" in query:
        low, high = created_filter(query["created"])
        runs = [r for r in runs if low <= int(r.created_at) <= high]
    page, per_page = request.page()
    state = request.sim.state
    with state.lock:
        chunk = [
            state.run_json(request.base, r)
            for r in runs[(page - 1) * per_page : page * per_page]
        ]
    reply = Reply(body={"total_count": len(runs), "workflow_runs": chunk})
    link = request.link_header(page, per_page, len(runs))
    if link:
        reply.headers["Link"] = link
    return reply


@router.add("GET", REPO + "/actions/runs")
def list_runs(request: Request) -> Reply:
    return list_runs_reply(request, request.sim.state.runs(full_name(request)))


@router.add("GET", REPO + "/actions/workflows/{workflow_id}/runs")
def list_workflow_runs(request: Request) -> Reply:
    name = full_name(request)
    flow = request.sim.state.workflow(name, request.params["workflow_id"])
    runs = [r for r in request.sim.state.runs(name) if r.workflow_id == flow.id]
    return list_runs_reply(request, runs)


@router.add("GET", REPO + "/actions/runs/{run_id}")
def get_run(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        run = state.get_run(full_name(request), request.int_param("run_id"))
        return Reply(body=state.run_json(request.base, run))


@router.add("GET", REPO + "/actions/runs/{run_id}/jobs")
def list_run_jobs(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        run = state.get_run(full_name(request), request.int_param("run_id"))
        jobs = state.run_jobs(run)
        page, per_page = request.page()
        chunk = jobs[(page - 1) * per_page : page * per_page]
        reply = Reply(
            body={
                "total_count": len(jobs),
                "jobs": [state.job_json(request.base, job) for job in chunk],
            }
        )
    link = request.link_header(page, per_page, len(jobs))
    if link:
        reply.headers["Link"] = link
    return reply


@router.add("GET", REPO + "/actions/jobs/{job_id}")
def get_job(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        job = state.get_job(full_name(request), request.int_param("job_id"))
        return Reply(body=state.job_json(request.base, job))


@router.add("POST", REPO + "/actions/runs/{run_id}/cancel")
def cancel_run(request: Request) -> Reply:
    request.sim.state.cancel_run(full_name(request), request.int_param("run_id"))
    return Reply(status=202, body={})


@router.add("POST", REPO + "/actions/runs/{run_id}/force-cancel")
def force_cancel_run(request: Request) -> Reply:
    request.sim.state.cancel_run(
        full_name(request), request.int_param("run_id"), force=True
    )
    return Reply(status=202, body={})
