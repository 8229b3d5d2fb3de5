"""The webhook of a repository or an organization and its delivery log."""

from __future__ import annotations

from urllib.parse import urlencode

from githubsim import shapes
from githubsim.api.common import ORG, REPO, full_name, org_name
from githubsim.errors import ApiError, invalid, not_found
from githubsim.routing import Reply, Request, Router
from githubsim.webhooks import HOOK_ID

router = Router()


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
