"""Path prefixes and the owner checks every GitHub endpoint starts with."""

from __future__ import annotations

from githubsim.errors import not_found
from githubsim.routing import Request

REPO = "/repos/{owner}/{repo}"
ORG = "/orgs/{org}"


def full_name(request: Request) -> str:
    name = f"{request.params['owner']}/{request.params['repo']}"
    request.sim.state.repository_id(name)
    return name


def org_name(request: Request) -> str:
    org = request.params["org"]
    if org not in request.sim.state.organizations:
        raise not_found()
    return org
