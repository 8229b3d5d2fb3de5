"""Repositories and organizations."""

from __future__ import annotations

from githubsim import shapes
from githubsim.api.common import ORG, REPO, full_name, org_name
from githubsim.routing import Reply, Request, Router

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
