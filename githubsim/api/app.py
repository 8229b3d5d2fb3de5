"""The rate limit and the GitHub App installation endpoints."""

from __future__ import annotations

from typing import Any

import jwt

from githubsim import shapes
from githubsim.clock import isoformat
from githubsim.errors import ApiError
from githubsim.routing import Reply, Request, Router

router = Router()


@router.add("GET", "/rate_limit")
def rate_limit(request: Request) -> Reply:
    limit, remaining, used, reset = request.sim.state.limits.budget(request.token)
    core = {"limit": limit, "remaining": remaining, "reset": reset, "used": used}
    return Reply(
        body={
            "resources": {"core": core, "search": {**core, "limit": 30}},
            "rate": core,
        }
    )


def require_jwt(request: Request) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            request.token, options={"verify_signature": False}
        )
    except jwt.PyJWTError:
        raise ApiError(401, "A JSON web token could not be decoded", None) from None
    return claims


def installation_json(
    request: Request, installation_id: int, app_id: int
) -> dict[str, Any]:
    state = request.sim.state
    org = state.default_repository.split("/")[0]
    with state.lock:
        org_id = state.organizations[org]
    created = isoformat(shapes.EPOCH_2020)
    url = f"{request.base}/app/installations/{installation_id}"
    return {
        "id": installation_id,
        "account": shapes.user(request.base, org, org_id, "Organization"),
        "repository_selection": "selected",
        "access_tokens_url": f"{url}/access_tokens",
        "repositories_url": f"{request.base}/installation/repositories",
        "html_url": f"{request.base}/organizations/{org}/settings/installations/{installation_id}",
        "app_id": app_id,
        "app_slug": "runner-control-plane",
        "target_id": org_id,
        "target_type": "Organization",
        "permissions": {"actions": "write", "secrets": "write", "metadata": "read"},
        "events": ["workflow_job", "workflow_run"],
        "created_at": created,
        "updated_at": created,
        "single_file_name": None,
        "suspended_by": None,
        "suspended_at": None,
    }


def app_id_of(claims: dict[str, Any]) -> int:
    try:
        return int(claims.get("iss", 1))
    except (TypeError, ValueError):
        return 1


@router.add("GET", "/app/installations/{installation_id}")
def get_installation(request: Request) -> Reply:
    claims = require_jwt(request)
    installation_id = request.int_param("installation_id")
    return Reply(body=installation_json(request, installation_id, app_id_of(claims)))


@router.add("POST", "/app/installations/{installation_id}/access_tokens")
def create_installation_token(request: Request) -> Reply:
    claims = require_jwt(request)
    request.int_param("installation_id")
    token, expires_at = request.sim.state.limits.issue_installation_token(
        app_id_of(claims)
    )
    return Reply(
        status=201,
        body={
            "token": token,
            "expires_at": expires_at,
            "permissions": {"actions": "write", "secrets": "write", "metadata": "read"},
            "repository_selection": "selected",
        },
    )
