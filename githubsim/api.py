"""GitHub REST endpoints the control plane uses, answered in GitHub's shapes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import jwt

from githubsim import shapes
from githubsim.clock import isoformat, parse_iso
from githubsim.errors import ApiError, invalid, not_found
from githubsim.models import Run
from githubsim.routing import Reply, Request, Router
from githubsim.secretstore import (
    Scope,
    check_visibility,
    environment_scope,
    organization_scope,
    repository_scope,
)
from githubsim.webhooks import HOOK_ID

router = Router()

REPO = "/repos/{owner}/{repo}"
ORG = "/orgs/{org}"
INSTALLATION_ID = 1


def full_name(request: Request) -> str:
    name = f"{request.params['owner']}/{request.params['repo']}"
    request.sim.state.repository_id(name)
    return name


def org_name(request: Request) -> str:
    org = request.params["org"]
    if org not in request.sim.state.organizations:
        raise not_found()
    return org


# Repositories, organizations, environments ------------------------------------------------


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


# Runners -------------------------------------------------------------------------------


def list_runners(request: Request) -> Reply:
    state = request.sim.state
    page, per_page = request.page(default_per_page=30)
    name = request.query.get("name")
    if name is not None:
        # The name filter finds at most one runner; no need to touch the page cache.
        with state.lock:
            found = state.find_runner(name)
            runners = (
                []
                if found is None
                else [shapes.runner(found, state.custom_label_ids())]
            )
        return Reply(body={"total_count": len(runners), "runners": runners})
    body, etag = state.runners_page(page, per_page)
    reply = Reply(body=body, etag=etag)
    link = request.link_header(page, per_page, state.runner_count())
    if link:
        reply.headers["Link"] = link
    return reply


def get_runner(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        runner = state.runner(request.int_param("runner_id"))
        return Reply(body=shapes.runner(runner, state.custom_label_ids()))


def delete_runner(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        runner = state.runner(request.int_param("runner_id"))
        state.remove_runner(runner.name)
    return Reply(status=204)


for scope in (REPO, ORG):
    router.add("GET", scope + "/actions/runners")(list_runners)
    router.add("GET", scope + "/actions/runners/{runner_id}")(get_runner)
    router.add("DELETE", scope + "/actions/runners/{runner_id}")(delete_runner)


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
        job = state.get_job(run.repository, run.job_id)
        return Reply(
            body={"total_count": 1, "jobs": [state.job_json(request.base, job)]}
        )


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


# Webhooks and their delivery logs --------------------------------------------------------

# GitHub redelivers deliveries made in the last 3 days only.
REDELIVERY_WINDOW = 3 * 86400.0


def hook_here(request: Request) -> str:
    """The scope whose hook list this request reads, if the simulated hook is there."""
    state = request.sim.state
    if "org" in request.params:
        scope, owner = "organization", org_name(request)
    else:
        scope, owner = "repository", full_name(request)
    config = state.config
    if config.webhook_url and config.webhook_scope == scope:
        if owner == state.hook_owner(scope):
            return scope
    return ""


def the_hook(request: Request) -> str:
    scope = hook_here(request)
    if not scope or request.int_param("hook_id") != HOOK_ID:
        raise not_found()
    return scope


def list_hooks(request: Request) -> Reply:
    scope = hook_here(request)
    state = request.sim.state
    if not scope:
        return Reply(body=[])
    owner = state.hook_owner(scope)
    hook = shapes.hook(
        request.base,
        scope,
        owner,
        HOOK_ID,
        state.config.webhook_url,
        shapes.EPOCH_2020,
    )
    return Reply(body=[hook])


def _cursor(request: Request) -> int | None:
    cursor = request.query.get("cursor")
    if cursor is None:
        return None
    number = cursor.removeprefix("v1_")
    if not number.isdigit():
        raise ApiError(400, f"Invalid cursor {cursor!r}")
    return int(number)


def list_hook_deliveries(request: Request) -> Reply:
    """Newest first, ``per_page`` at a time, older pages through ``cursor`` (Link)."""
    the_hook(request)
    _, per_page = request.page(default_per_page=30)
    before = _cursor(request)
    wanted = request.query.get("status")
    if wanted not in (None, "success", "failure"):
        raise invalid("status must be success or failure", "status")
    records = request.sim.state.deliveries()
    if before is not None:
        records = [r for r in records if r["id"] < before]
    if wanted is not None:
        records = [
            r
            for r in records
            if (200 <= r["status_code"] < 400) == (wanted == "success")
        ]
    page = records[:per_page]
    reply = Reply(body=[shapes.delivery_item(r) for r in page])
    if len(records) > per_page:
        query = {
            **request.query,
            "per_page": str(per_page),
            "cursor": f"v1_{page[-1]['id']}",
        }
        reply.headers["Link"] = (
            f'<{request.base}{request.path}?{urlencode(query)}>; rel="next"'
        )
    return reply


def get_hook_delivery(request: Request) -> Reply:
    the_hook(request)
    state = request.sim.state
    record = state.delivery(request.int_param("delivery_id"))
    return Reply(body=shapes.delivery(record, state.config.webhook_url))


def redeliver_hook_delivery(request: Request) -> Reply:
    """Queue the same event with the same guid; the attempt is logged as a redelivery."""
    the_hook(request)
    state = request.sim.state
    record = state.delivery(request.int_param("delivery_id"))
    if state.clock.now() - record["delivered_at"] > REDELIVERY_WINDOW:
        raise invalid("Cannot redeliver deliveries older than 3 days", "delivery_id")
    request.sim.webhooks.redeliver(record)
    return Reply(status=202, body={})


for scope in (REPO, ORG):
    router.add("GET", scope + "/hooks")(list_hooks)
    router.add("GET", scope + "/hooks/{hook_id}/deliveries")(list_hook_deliveries)
    router.add("GET", scope + "/hooks/{hook_id}/deliveries/{delivery_id}")(
        get_hook_delivery
    )
    router.add("POST", scope + "/hooks/{hook_id}/deliveries/{delivery_id}/attempts")(
        redeliver_hook_delivery
    )


# Secrets -------------------------------------------------------------------------------


def scope_of(request: Request) -> Scope:
    if "org" in request.params:
        return organization_scope(org_name(request))
    name = full_name(request)
    if "environment_name" in request.params:
        return environment_scope(name, request.params["environment_name"])
    return repository_scope(name)


def secret_json(scope: Scope, secret: Any) -> dict[str, Any]:
    body = {
        "name": secret.name,
        "created_at": isoformat(secret.created_at),
        "updated_at": isoformat(secret.updated_at),
    }
    if scope[0] == "organization":
        body["visibility"] = secret.visibility or "all"
    return body


def list_secrets(request: Request) -> Reply:
    scope = scope_of(request)
    state = request.sim.state
    page, per_page = request.page()
    with state.lock:
        secrets = sorted(
            state.secret_store(scope).secrets.values(), key=lambda s: s.name
        )
        chunk = secrets[(page - 1) * per_page : page * per_page]
        body = {
            "total_count": len(secrets),
            "secrets": [secret_json(scope, s) for s in chunk],
        }
    reply = Reply(body=body)
    link = request.link_header(page, per_page, len(secrets))
    if link:
        reply.headers["Link"] = link
    return reply


def get_public_key(request: Request) -> Reply:
    store = request.sim.state.secret_store(scope_of(request))
    return Reply(body={"key_id": store.key_id, "key": store.public_key_b64})


def get_secret(request: Request) -> Reply:
    scope = scope_of(request)
    state = request.sim.state
    with state.lock:
        secret = state.secret_store(scope).get(request.params["secret_name"])
        return Reply(body=secret_json(scope, secret))


def put_secret(request: Request) -> Reply:
    scope = scope_of(request)
    body = request.json_object()
    state = request.sim.state
    visibility = check_visibility(
        body.get("visibility"), required=scope[0] == "organization"
    )
    with state.lock:
        created = state.secret_store(scope).put_sealed(
            request.params["secret_name"],
            body.get("encrypted_value"),
            body.get("key_id"),
            state.clock.now(),
            visibility,
        )
    return Reply(status=201, body={}) if created else Reply(status=204)


def delete_secret(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        state.secret_store(scope_of(request)).delete(request.params["secret_name"])
    return Reply(status=204)


for prefix in (
    REPO + "/actions/secrets",
    REPO + "/environments/{environment_name}/secrets",
    ORG + "/actions/secrets",
):
    # public-key first: it would otherwise be read as a secret named "public-key".
    router.add("GET", prefix + "/public-key")(get_public_key)
    router.add("GET", prefix)(list_secrets)
    router.add("GET", prefix + "/{secret_name}")(get_secret)
    router.add("PUT", prefix + "/{secret_name}")(put_secret)
    router.add("DELETE", prefix + "/{secret_name}")(delete_secret)


# Rate limit and GitHub App ------------------------------------------------------------


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
    require_jwt(request)
    request.int_param("installation_id")
    token, expires_at = request.sim.state.limits.issue_installation_token()
    return Reply(
        status=201,
        body={
            "token": token,
            "expires_at": expires_at,
            "permissions": {"actions": "write", "secrets": "write", "metadata": "read"},
            "repository_selection": "selected",
        },
    )


def encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()
