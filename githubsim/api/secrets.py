"""Actions secrets of repositories, environments and organizations."""

from __future__ import annotations

from typing import Any

from githubsim.api.common import ORG, REPO, full_name, org_name
from githubsim.clock import isoformat
from githubsim.routing import Reply, Request, Router
from githubsim.secretstore import (
    Scope,
    check_visibility,
    environment_scope,
    organization_scope,
    repository_scope,
)

router = Router()


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
