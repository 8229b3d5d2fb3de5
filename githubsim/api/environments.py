"""Environments, pending deployments (approve or reject) and deployments with statuses.

:data:`control` adds the control API's ``POST /_sim/users``: a GitHub user to name as a
reviewer, and optionally the token that authenticates as that user.
"""

from __future__ import annotations

from typing import Any

from githubsim.api.common import REPO, full_name
from githubsim.errors import ApiError, invalid
from githubsim.routing import Reply, Request, Router

router = Router()
control = Router()


def paged(request: Request, items: list[Any]) -> tuple[list[Any], str | None]:
    page, per_page = request.page()
    chunk = items[(page - 1) * per_page : page * per_page]
    return chunk, request.link_header(page, per_page, len(items))


def with_link(reply: Reply, link: str | None) -> Reply:
    if link:
        reply.headers["Link"] = link
    return reply


# Environments -----------------------------------------------------------------------


@router.add("GET", REPO + "/environments")
def list_environments(request: Request) -> Reply:
    state = request.sim.state
    envs = state.environments(full_name(request))
    chunk, link = paged(request, envs)
    with state.lock:
        body = {
            "total_count": len(envs),
            "environments": [state.environment_json(request.base, e) for e in chunk],
        }
    return with_link(Reply(body=body), link)


@router.add("GET", REPO + "/environments/{environment_name}")
def get_environment(request: Request) -> Reply:
    state = request.sim.state
    env = state.get_environment(full_name(request), request.params["environment_name"])
    with state.lock:
        return Reply(body=state.environment_json(request.base, env))


@router.add("PUT", REPO + "/environments/{environment_name}")
def put_environment(request: Request) -> Reply:
    state = request.sim.state
    env = state.put_environment(
        full_name(request), request.params["environment_name"], request.json_object()
    )
    with state.lock:
        return Reply(body=state.environment_json(request.base, env))


# Pending deployments ----------------------------------------------------------------


@router.add("GET", REPO + "/actions/runs/{run_id}/pending_deployments")
def list_pending(request: Request) -> Reply:
    state = request.sim.state
    holds = state.pending_deployments(full_name(request), request.int_param("run_id"))
    with state.lock:
        return Reply(
            body=[state.pending_json(request.base, h, request.token) for h in holds]
        )


@router.add("POST", REPO + "/actions/runs/{run_id}/pending_deployments")
def review_pending(request: Request) -> Reply:
    state = request.sim.state
    body = request.json_object()
    ids = body.get("environment_ids")
    if (
        not isinstance(ids, list)
        or not ids
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise invalid(
            "environment_ids must be a non-empty list of environment ids",
            "environment_ids",
            "missing_field" if ids is None else "invalid",
        )
    review = body.get("state")
    if review not in ("approved", "rejected"):
        raise invalid('state must be "approved" or "rejected"', "state")
    comment = body.get("comment")
    if not isinstance(comment, str):
        raise invalid("comment is required", "comment", "missing_field")
    deployments = state.review_pending(
        full_name(request),
        request.int_param("run_id"),
        request.token,
        ids,
        review,
        comment,
    )
    with state.lock:
        return Reply(body=[state.deployment_json(request.base, d) for d in deployments])


@router.add("GET", REPO + "/actions/runs/{run_id}/approvals")
def list_approvals(request: Request) -> Reply:
    state = request.sim.state
    return Reply(
        body=state.approvals_json(
            request.base, full_name(request), request.int_param("run_id")
        )
    )


# Deployments ------------------------------------------------------------------------


@router.add("GET", REPO + "/deployments")
def list_deployments(request: Request) -> Reply:
    state = request.sim.state
    found = state.deployments(full_name(request))
    query = request.query
    for key in ("sha", "ref", "environment"):
        if key in query:
            found = [d for d in found if getattr(d, key) == query[key]]
    if query.get("task", "deploy") != "deploy":
        found = []
    chunk, link = paged(request, found)
    with state.lock:
        body = [state.deployment_json(request.base, d) for d in chunk]
    return with_link(Reply(body=body), link)


@router.add("GET", REPO + "/deployments/{deployment_id}")
def get_deployment(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        deployment = state.get_deployment(
            full_name(request), request.int_param("deployment_id")
        )
        return Reply(body=state.deployment_json(request.base, deployment))


@router.add("GET", REPO + "/deployments/{deployment_id}/statuses")
def list_statuses(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        deployment = state.get_deployment(
            full_name(request), request.int_param("deployment_id")
        )
        # Newest first, as GitHub lists them.
        statuses = list(reversed(deployment.statuses))
        chunk, link = paged(request, statuses)
        body = [state.status_json(request.base, deployment, s) for s in chunk]
    return with_link(Reply(body=body), link)


# Control API ------------------------------------------------------------------------


@control.add("POST", "/_sim/users")
def add_user(request: Request) -> Reply:
    body = request.json_object()
    login = body.get("login")
    token = body.get("token", "")
    if not isinstance(login, str) or not login or not isinstance(token, str):
        raise ApiError(422, 'send {"login": "name", "token": "optional token"}')
    user_id = request.sim.state.add_user(login, token)
    return Reply(status=201, body={"id": user_id, "login": login})
