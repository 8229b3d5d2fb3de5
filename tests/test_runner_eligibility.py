"""A runner's deploy eligibility per environment whose pool holds it, on its page's
top card and in the runner API: each environment's signal policy and the trust
override count; a runner in no pool gets the fleet-wide answer. Bounded queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from deploys.models import Environment
from runners import trust
from runners.models import Reason, Runner, State
from runners.states import Flag
from tests.factories import make_env, make_runner
from tests.test_runners_api import token_client as api

pytestmark = pytest.mark.django_db

URL = "/api/v1/runners/"
STRICT = (
    "GitHub status required, heartbeat required, exporter required, canary required"
)
RELAXED = (
    "GitHub status required, heartbeat required, exporter advisory, canary required"
)


def seed_primary(name: str = "prod-primary") -> Runner:
    """The seed's primary: GitHub and heartbeats say it is up, Prometheus cannot
    reach its exporter, so the fleet-wide state is degraded."""
    now = timezone.now()
    return make_runner(
        name,
        state=State.DEGRADED,
        reason=Reason.EXPORTER_UNREACHABLE,
        github_status="online",
        github_seen_at=now,
        last_heartbeat_at=now,
        heartbeat_deadline=now + timedelta(seconds=20),
        observed_flags=int(
            Flag.GITHUB_ONLINE | Flag.HEARTBEAT_FRESH | Flag.EXPORTER_UNREACHABLE
        ),
    )


def two_environments(runner: Runner) -> None:
    """Production strict with ``runner`` as its primary; staging with the exporter
    advisory and ``runner`` as its secondary."""
    make_env("production", runner)
    make_env("staging", make_runner("staging-1"), runner, exporter_policy="advisory")


def test_api_answers_per_environment_under_each_policy(viewer: User) -> None:
    two_environments(seed_primary())

    body = api(viewer).get(f"{URL}prod-primary/").json()

    assert body["eligible"] is False
    assert body["ineligibility_reasons"] == [
        "production: degraded (exporter unreachable)"
    ]
    assert body["eligibility"] == [
        {
            "environment": "production",
            "position": 0,
            "signal_policy": STRICT,
            "eligible": False,
            "reasons": ["degraded (exporter unreachable)"],
            "notes": [],
            "trusted": False,
        },
        {
            "environment": "staging",
            "position": 1,
            "signal_policy": RELAXED,
            "eligible": True,
            "reasons": [],
            "notes": ["exporter unreachable: advisory for staging"],
            "trusted": False,
        },
    ]


def test_api_counts_the_trust_override_in_every_environment(
    viewer: User, sre: User
) -> None:
    primary = seed_primary()
    two_environments(primary)
    trust.grant(primary, sre, "firewall, INC-7", timedelta(hours=2), timezone.now())

    body = api(viewer).get(f"{URL}prod-primary/").json()

    assert body["eligible"] is True
    assert body["ineligibility_reasons"] == []
    production, staging = body["eligibility"]
    assert production["eligible"] is True
    assert production["trusted"] is True
    [note] = production["notes"]
    assert note.startswith("degraded (exporter unreachable): overridden, trusted by ")
    assert note.endswith(": firewall, INC-7")
    # Staging lets it in on its own policy: the override is not needed there.
    assert staging["notes"] == ["exporter unreachable: advisory for staging"]
    assert staging["trusted"] is True


def test_api_keeps_the_fleet_wide_answer_for_a_runner_in_no_pool(
    viewer: User,
) -> None:
    seed_primary("stray")

    body = api(viewer).get(f"{URL}stray/").json()

    assert body["eligible"] is False
    assert body["ineligibility_reasons"] == ["degraded (exporter unreachable)"]
    assert body["eligibility"] == []


def test_an_expired_override_no_longer_counts(viewer: User, sre: User) -> None:
    primary = seed_primary()
    make_env("production", primary)
    trust.grant(
        primary, sre, "firewall", timedelta(minutes=1), timezone.now() - timedelta(2)
    )

    body = api(viewer).get(f"{URL}prod-primary/").json()

    assert body["eligible"] is False
    assert body["eligibility"][0]["trusted"] is False


def test_list_query_count_does_not_grow_with_pools_and_policies(
    viewer: User, django_assert_num_queries: Any
) -> None:
    client = api(viewer)
    for size in (2, 40):
        Environment.objects.all().delete()
        Runner.objects.all().delete()
        runners = [seed_primary(f"bulk-{i:03d}") for i in range(size)]
        for name, policy in (("production", "required"), ("staging", "advisory")):
            make_env(f"{name}-{size}", *runners, exporter_policy=policy)
        # knox's token lookups (2), role groups, the count, the page, its pools
        # (with their environments).
        with django_assert_num_queries(6):
            body = client.get(URL, {"limit": 100}).json()
        assert body["count"] == size
        assert {len(item["eligibility"]) for item in body["results"]} == {2}
        assert {item["ineligibility_reasons"][0] for item in body["results"]} == {
            f"production-{size}: degraded (exporter unreachable)"
        }


# The runner page's top card ------------------------------------------------------------


def test_card_says_where_the_runner_may_take_deploys_and_why_not(
    viewer_client: Client,
) -> None:
    two_environments(seed_primary())

    response = viewer_client.get("/fleet/prod-primary/")

    page = response.content.decode()
    card = page[page.index('id="eligibility"') : page.index('id="trust"')]
    assert 'class="card partly-eligible" id="eligibility"' in page
    assert "Eligible for staging only." in card
    assert 'data-environment="production" class="ineligible"' in card
    assert 'data-environment="staging" class="eligible"' in card
    assert f"({STRICT})" in card and f"({RELAXED})" in card
    assert "<strong>not eligible</strong>: degraded (exporter unreachable)" in card
    assert "exporter unreachable: advisory for staging" in card
    assert "primary of its pool" in card and "secondary 1 of its pool" in card
    assert response.context["ineligible"] == [
        "production: degraded (exporter unreachable)"
    ]


def test_card_shows_the_override_where_it_counts(
    viewer_client: Client, sre: User
) -> None:
    primary = seed_primary()
    make_env("production", primary)
    trust.grant(primary, sre, "firewall, INC-7", timedelta(hours=2), timezone.now())

    page = viewer_client.get("/fleet/prod-primary/").content.decode()

    card = page[page.index('id="eligibility"') : page.index('id="trust"')]
    assert 'id="eligible"' in card
    assert "Eligible: deploys to production may run on this runner." in card
    assert (
        "<li>degraded (exporter unreachable): overridden, trusted by "
        f"{sre.username} until "
    ) in card


def test_card_of_a_runner_in_no_pool_gives_the_fleet_wide_answer(
    viewer_client: Client,
) -> None:
    seed_primary("stray")

    page = viewer_client.get("/fleet/stray/").content.decode()

    card = page[page.index('id="eligibility"') : page.index('id="trust"')]
    assert "In no environment's pool" in card
    assert '<ul id="ineligibility"><li>degraded (exporter unreachable)</li>' in card


@pytest.mark.parametrize("environments", [1, 12])
def test_card_costs_no_query_per_environment(
    viewer_client: Client, django_assert_num_queries: Any, environments: int
) -> None:
    runner = seed_primary()
    for n in range(environments):
        make_env(f"env-{n:02d}", runner, exporter_policy="advisory")
    viewer_client.get("/")  # the session's first request saves it

    # session, user, role groups, runner, its pools (with their environments), 2
    # timeline queries, events, jobs, the stopped-jobs banner, the newest runner
    # release (version card), the diagnostics panel's runs, the canary strip.
    with django_assert_num_queries(13):
        page = viewer_client.get("/fleet/prod-primary/").content.decode()

    assert page.count("exporter unreachable: advisory for env-") == environments


def test_card_names_the_environments_a_runner_is_kept_out_of(
    viewer_client: Client,
) -> None:
    primary = seed_primary()
    make_env("production", primary)
    make_env("canary", primary)

    page = viewer_client.get("/fleet/prod-primary/").content.decode()

    assert (
        '<p id="not-eligible"><strong>Not eligible for deploys</strong> to canary, '
        "production.</p>"
    ) in page
    assert 'class="card ineligible" id="eligibility"' in page
