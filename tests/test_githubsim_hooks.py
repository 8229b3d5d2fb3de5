"""The simulator's webhooks: the hook list, the delivery log with cursor pagination
and redelivery, in GitHub's shapes (tests/data/github/rest.subset.json)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from githubsim import Simulator
from tests.simhttp import (
    REPO,
    Captured,
    assert_rest_shape,
    dispatch,
    get,
    post,
)

HOOKS = "/repos/{owner}/{repo}/hooks"
DELIVERIES = HOOKS + "/{hook_id}/deliveries"
DELIVERY = DELIVERIES + "/{delivery_id}"
ATTEMPTS = DELIVERY + "/attempts"
DEAD_URL = "http://127.0.0.1:9/github/webhook"


# A control plane that is down: every delivery fails to connect.
pytestmark = pytest.mark.sim(
    time_scale=600, demo=True, seed=7, webhook_url=DEAD_URL, webhook_secret="s"
)


@pytest.fixture
def up() -> Iterator[Captured]:
    captured = Captured()
    yield captured
    captured.close()


def hook_id(sim: Simulator) -> int:
    [hook] = assert_rest_shape("GET", HOOKS, get(sim, f"{REPO}/hooks"))
    return int(hook["id"])


def log(sim: Simulator, **params: Any) -> requests.Response:
    return get(sim, f"{REPO}/hooks/{hook_id(sim)}/deliveries", params=params)


def test_the_hook_is_listed_with_its_url_on_its_scope_only(sim: Simulator) -> None:
    [hook] = assert_rest_shape("GET", HOOKS, get(sim, f"{REPO}/hooks"))
    assert hook["config"]["url"] == DEAD_URL
    assert hook["url"].startswith(sim.url)
    org = get(sim, "/orgs/acme/hooks")
    assert assert_rest_shape("GET", "/orgs/{org}/hooks", org) == []

    sim.configure(webhook_scope="organization")

    [org_hook] = assert_rest_shape(
        "GET", "/orgs/{org}/hooks", get(sim, "/orgs/acme/hooks")
    )
    assert org_hook["type"] == "Organization"
    assert get(sim, f"{REPO}/hooks").json() == []


def test_failed_deliveries_are_logged_newest_first_with_cursor_pages(
    sim: Simulator,
) -> None:
    # No runner is called "nobody": the jobs stay queued and send nothing more.
    dispatch(sim, "nobody")
    dispatch(sim, "nobody", token="corr-2")
    assert sim.webhooks.wait_idle(15)
    # ping, then requested + queued per dispatch, each tried once and failed.
    first = log(sim, per_page=2)
    items = assert_rest_shape("GET", DELIVERIES, first)
    assert [i["status_code"] for i in items] == [0, 0]
    assert items[0]["status"] == "failed to connect to host"
    assert items[0]["id"] > items[1]["id"]
    seen = list(items)
    response = first
    while "next" in response.links:
        response = requests.get(
            response.links["next"]["url"],
            headers={"Authorization": "token t"},
            timeout=10,
        )
        seen += assert_rest_shape("GET", DELIVERIES, response)
    assert [i["event"] for i in reversed(seen)] == [
        "ping",
        "workflow_run",
        "workflow_job",
        "workflow_run",
        "workflow_job",
    ]
    assert len({i["guid"] for i in seen}) == 5
    assert not any(i["redelivery"] for i in seen)
    assert log(sim, status="success").json() == []
    assert len(log(sim, status="failure").json()) == 5


def test_redelivery_sends_the_same_event_with_the_same_guid(
    sim: Simulator, up: Captured
) -> None:
    dispatch(sim, "nobody")
    assert sim.webhooks.wait_idle(15)
    hook = hook_id(sim)
    failed = next(i for i in log(sim).json() if i["event"] == "workflow_run")
    detail = get(sim, f"{REPO}/hooks/{hook}/deliveries/{failed['id']}")
    body = assert_rest_shape("GET", DELIVERY, detail)
    assert body["request"]["payload"]["workflow_run"]["display_title"].endswith(
        "[corr-1]"
    )
    assert body["request"]["headers"]["X-GitHub-Delivery"] == failed["guid"]
    sim.set_webhook(up.url, "s")  # the control plane is back

    answer = post(sim, f"{REPO}/hooks/{hook}/deliveries/{failed['id']}/attempts")

    assert answer.status_code == 202
    assert_rest_shape("POST", ATTEMPTS, answer)
    assert sim.webhooks.wait_idle(15)
    [(event, payload, headers, _)] = [e for e in up.events() if e[0] != "ping"]
    assert event == "workflow_run"
    assert headers["x-github-delivery"] == failed["guid"]
    assert payload == body["request"]["payload"]
    [again] = [i for i in log(sim).json() if i["redelivery"]]
    assert again["guid"] == failed["guid"]
    assert again["id"] > failed["id"]
    assert again["status_code"] == 204


def test_unknown_hook_or_delivery_is_404_and_a_bad_cursor_400(
    sim: Simulator,
) -> None:
    assert get(sim, f"{REPO}/hooks/1/deliveries").status_code == 404
    hook = hook_id(sim)
    assert get(sim, f"{REPO}/hooks/{hook}/deliveries/1").status_code == 404
    bad = get(sim, f"{REPO}/hooks/{hook}/deliveries", params={"cursor": "x"})
    assert bad.status_code == 400


def test_deliveries_older_than_three_days_cannot_be_redelivered(
    sim: Simulator,
) -> None:
    assert sim.webhooks.wait_idle(15)
    [ping] = log(sim).json()
    sim.clock.advance(3 * 86400 + 1)
    hook = hook_id(sim)
    answer = post(sim, f"{REPO}/hooks/{hook}/deliveries/{ping['id']}/attempts")
    assert answer.status_code == 422
