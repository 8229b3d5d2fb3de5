"""Custom deployment protection rules: enabling a GitHub App on an environment, and the
App's review of a run (``actions/review-custom-gates-for-run``).

:data:`control` adds ``PUT /_sim/apps/{app_id}`` (an App installed on the organization,
with its slug and installation id) and ``GET /_sim/runs/{run_id}/gate_reviews`` (what
the Apps answered for a run).
"""

from __future__ import annotations

from githubsim.api.common import REPO, full_name
from githubsim.errors import ApiError, invalid
from githubsim.routing import Reply, Request, Router

router = Router()
control = Router()

RULES = REPO + "/environments/{environment_name}/deployment_protection_rules"


@router.add("GET", RULES)
def list_rules(request: Request) -> Reply:
    state = request.sim.state
    rules = state.custom_rules(full_name(request), request.params["environment_name"])
    with state.lock:
        return Reply(
            body={
                "total_count": len(rules),
                "custom_deployment_protection_rules": [
                    state.rule_json(request.base, rule) for rule in rules
                ],
            }
        )


@router.add("POST", RULES)
def create_rule(request: Request) -> Reply:
    state = request.sim.state
    body = request.json_object()
    rule = state.add_custom_rule(
        full_name(request),
        request.params["environment_name"],
        body.get("integration_id"),
    )
    with state.lock:
        return Reply(status=201, body=state.rule_json(request.base, rule))


@router.add("GET", RULES + "/apps")
def list_rule_apps(request: Request) -> Reply:
    state = request.sim.state
    state.get_environment(full_name(request), request.params["environment_name"])
    apps = state.apps()
    with state.lock:
        return Reply(
            body={
                "total_count": len(apps),
                "available_custom_deployment_protection_rule_integrations": [
                    state.app_json(request.base, app.id) for app in apps
                ],
            }
        )


@router.add("GET", RULES + "/{protection_rule_id}")
def get_rule(request: Request) -> Reply:
    state = request.sim.state
    rule = state.get_custom_rule(
        full_name(request),
        request.params["environment_name"],
        request.int_param("protection_rule_id"),
    )
    with state.lock:
        return Reply(body=state.rule_json(request.base, rule))


@router.add("DELETE", RULES + "/{protection_rule_id}")
def delete_rule(request: Request) -> Reply:
    request.sim.state.delete_custom_rule(
        full_name(request),
        request.params["environment_name"],
        request.int_param("protection_rule_id"),
    )
    return Reply(status=204)


@router.add("POST", REPO + "/actions/runs/{run_id}/deployment_protection_rule")
def review_custom_gates(request: Request) -> Reply:
    body = request.json_object()
    environment = body.get("environment_name")
    if not isinstance(environment, str) or not environment:
        raise invalid(
            "environment_name is required", "environment_name", "missing_field"
        )
    state = body.get("state")
    comment = body.get("comment", "")
    if state is None:
        # GitHub's "comment required" form: a comment without a decision.
        if not isinstance(comment, str) or not comment:
            raise invalid("state or comment is required", "state", "missing_field")
        request.sim.state.get_run(full_name(request), request.int_param("run_id"))
        return Reply(status=204)
    if state not in ("approved", "rejected"):
        raise invalid('state must be "approved" or "rejected"', "state")
    if not isinstance(comment, str):
        raise invalid("comment must be a string", "comment")
    request.sim.state.review_custom_rule(
        full_name(request),
        request.int_param("run_id"),
        request.token,
        environment,
        state,
        comment,
    )
    return Reply(status=204)


# Control API ------------------------------------------------------------------------


@control.add("PUT", "/_sim/apps/{app_id}")
def put_app(request: Request) -> Reply:
    body = request.json_object()
    slug = body.get("slug")
    installation_id = body.get("installation_id")
    if (
        not isinstance(slug, str)
        or not slug
        or not isinstance(installation_id, int)
        or isinstance(installation_id, bool)
    ):
        raise ApiError(422, 'send {"slug": "app-slug", "installation_id": 1}')
    app = request.sim.state.register_app(
        request.int_param("app_id"), slug, installation_id
    )
    return Reply(
        body={"id": app.id, "slug": app.slug, "installation_id": app.installation_id}
    )


@control.add("GET", "/_sim/runs/{run_id}/gate_reviews")
def gate_reviews(request: Request) -> Reply:
    return Reply(body=request.sim.state.gate_reviews(request.int_param("run_id")))
