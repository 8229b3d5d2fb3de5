"""Repositories, organizations and environments."""

from __future__ import annotations

from githubsim import shapes
from githubsim.api.common import ORG, REPO, full_name, org_name
from githubsim.clock import isoformat
from githubsim.routing import Reply, Request, Router
from githubsim.secretstore import environment_scope

router = Router()


@router.add("GET", REPO)
def get_repository(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        repo = state.repository_json(request.base, full_name(request))
    repo["permissions"] = {"admin": True, "push": True, "pull": True}
    return Reply(body=repo)


@router.add("GET", ORG)
def get_organization(request: Request) -> Reply:
    org = org_name(request)
    with request.sim.state.lock:
        org_id = request.sim.state.organizations[org]
    body = shapes.user(request.base, org, org_id, "Organization")
    body["url"] = f"{request.base}/orgs/{org}"
    return Reply(body=body)


@router.add("GET", REPO + "/environments/{environment_name}")
def get_environment(request: Request) -> Reply:
    name = full_name(request)
    env = request.params["environment_name"]
    request.sim.state.secret_store(environment_scope(name, env))
    created = isoformat(shapes.EPOCH_2020)
    env_id = 5_000_000 + sum(map(ord, env))
    return Reply(
        body={
            "id": env_id,
            "node_id": shapes.node_id("011:Environment", env_id),
            "name": env,
            "url": f"{request.base}/repos/{name}/environments/{env}",
            "html_url": f"{request.base}/{name}/deployments/activity_log?environments_filter={env}",
            "created_at": created,
            "updated_at": created,
            "protection_rules": [],
            "deployment_branch_policy": None,
        }
    )
