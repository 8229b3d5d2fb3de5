"""An environment's signal policy: which runner signals keep a runner out of its
deploys (required), only explain (advisory) or do not count (ignored)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.test import Client

from deploys.models import Environment
from runners.eligibility import SignalPolicy
from runners.models import Flag, Reason, Runner, State
from tests.factories import make_env, pool_runner

pytestmark = pytest.mark.django_db

ONLINE = int(Flag.GITHUB_ONLINE)


def exporter_down(name: str = "prod-primary", **kw: Any) -> Runner:
    """The seed's primary: GitHub says online, the exporter is unreachable, no
    heartbeat agent (the sweep calls it degraded)."""
    kw.setdefault("observed_flags", ONLINE | Flag.EXPORTER_UNREACHABLE)
    kw.setdefault("github_status", "online")
    return Runner.objects.create(
        name=name, state=State.DEGRADED, reason=Reason.EXPORTER_UNREACHABLE, **kw
    )


def test_default_policy_is_strict_and_passes_over_the_degraded_primary() -> None:
    primary = exporter_down()
    secondary = pool_runner("prod-secondary", observed_flags=ONLINE | 1)
    env = make_env("production", primary, secondary)

    chosen, pool = env.pick_runner()

    assert env.heartbeat_policy == env.exporter_policy == SignalPolicy.REQUIRED
    assert chosen == secondary
    assert pool[0].passed_over == ["degraded (exporter unreachable)"]
    assert pool[0].notes == []


def test_advisory_exporter_alone_does_not_make_a_github_only_runner_eligible() -> None:
    primary = exporter_down()
    env = make_env("production", primary, exporter_policy=SignalPolicy.ADVISORY)

    chosen, pool = env.pick_runner()

    assert chosen is None
    assert pool[0].passed_over == ["unknown (only GitHub reports it)"]
    assert pool[0].notes == ["exporter unreachable: advisory for production"]


def test_advisory_exporter_with_heartbeats_makes_the_primary_eligible() -> None:
    primary = exporter_down(observed_flags=ONLINE | Flag.EXPORTER_UNREACHABLE | 1)
    secondary = pool_runner("prod-secondary")
    env = make_env(
        "production", primary, secondary, exporter_policy=SignalPolicy.ADVISORY
    )

    chosen, pool = env.pick_runner()

    assert chosen == primary
    assert pool[0].notes == ["exporter unreachable: advisory for production"]
    # The fleet-wide state is the runner's own: still degraded.
    assert primary.state == State.DEGRADED


def test_a_required_signal_still_blocks_under_a_relaxed_policy() -> None:
    # Heartbeat stale (required) with the exporter advisory: out.
    runner = Runner.objects.create(
        name="r1",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        observed_flags=ONLINE | Flag.HEARTBEAT_STALE | Flag.EXPORTER_UNREACHABLE,
    )
    env = make_env("staging", runner, exporter_policy=SignalPolicy.ADVISORY)

    chosen, pool = env.pick_runner()

    assert chosen is None
    assert pool[0].passed_over == ["unhealthy (heartbeat stale)"]


def test_the_fleet_state_holds_a_runner_recovering_on_a_required_signal() -> None:
    # The latest observation is good again, but hysteresis keeps the runner
    # unhealthy for the heartbeat (required here): still out until it recovers.
    runner = Runner.objects.create(
        name="r1",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        observed_flags=ONLINE | Flag.HEARTBEAT_FRESH | Flag.EXPORTER_UNREACHABLE,
    )
    env = make_env("staging", runner, exporter_policy=SignalPolicy.ADVISORY)

    assert env.pick_runner()[1][0].passed_over == ["unhealthy (heartbeat stale)"]


def test_ignored_heartbeat_neither_blocks_nor_vouches() -> None:
    stale = Runner.objects.create(
        name="stale",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        observed_flags=ONLINE | Flag.HEARTBEAT_STALE | Flag.EXPORTER_OK,
    )
    only_heartbeat = Runner.objects.create(
        name="only-heartbeat",
        state=State.HEALTHY,
        observed_flags=ONLINE | Flag.HEARTBEAT_FRESH,
    )
    env = make_env(
        "staging", only_heartbeat, stale, heartbeat_policy=SignalPolicy.IGNORED
    )

    chosen, pool = env.pick_runner()

    assert chosen == stale  # its exporter vouches; the stale heartbeat is ignored
    assert pool[0].passed_over == ["unknown (only GitHub reports it)"]
    assert pool[1].notes == []  # ignored: not even a note


def test_disk_low_reported_only_by_an_advisory_exporter_does_not_block() -> None:
    runner = Runner.objects.create(
        name="r1",
        state=State.DEGRADED,
        reason=Reason.DISK_LOW,
        exporter_problems=int(Flag.DISK_LOW),
        observed_flags=ONLINE | Flag.HEARTBEAT_FRESH | Flag.EXPORTER_OK | Flag.DISK_LOW,
    )
    env = make_env("staging", runner, exporter_policy=SignalPolicy.ADVISORY)

    chosen, pool = env.pick_runner()

    assert chosen == runner
    assert pool[0].notes == ["disk low (exporter): advisory for staging"]


def test_drain_and_github_offline_block_whatever_the_policy() -> None:
    drained = exporter_down(
        "drained", drained=True, drained_by="sam", drained_reason="x"
    )
    offline = Runner.objects.create(
        name="offline",
        state=State.UNHEALTHY,
        reason=Reason.GITHUB_OFFLINE,
        observed_flags=int(Flag.GITHUB_OFFLINE),
    )
    env = make_env(
        "staging",
        drained,
        offline,
        heartbeat_policy=SignalPolicy.IGNORED,
        exporter_policy=SignalPolicy.IGNORED,
    )

    chosen, pool = env.pick_runner()

    assert chosen is None
    assert pool[0].passed_over[0] == "drained by sam: x"
    assert pool[1].passed_over == ["unhealthy (GitHub says offline)"]


def test_the_api_sets_and_validates_the_policy(admin_client_: Client) -> None:
    make_env("staging", exporter_down())

    bad = admin_client_.patch(
        "/api/v1/environments/staging/",
        {"exporter_policy": "sometimes"},
        content_type="application/json",
    )
    good = admin_client_.patch(
        "/api/v1/environments/staging/",
        {"exporter_policy": "advisory"},
        content_type="application/json",
    )

    assert bad.status_code == 400
    assert "exporter_policy" in bad.json()
    assert good.status_code == 200, good.content
    body = good.json()
    assert body["exporter_policy"] == "advisory"
    assert body["heartbeat_policy"] == "required"
    assert body["pool_status"][0]["notes"] == [
        "exporter unreachable: advisory for staging"
    ]


def test_the_environment_page_shows_the_policy_and_the_notes(
    viewer_client: Client,
) -> None:
    make_env("staging", exporter_down(), exporter_policy=SignalPolicy.ADVISORY)

    page = viewer_client.get("/deploys/environments/staging/").content.decode()

    assert "GitHub status required, heartbeat required, exporter advisory" in page
    assert "exporter unreachable: advisory for staging" in page


@pytest.mark.parametrize("size", [2, 8])
def test_judging_the_pool_costs_one_query_whatever_its_size_and_policy(
    size: int, django_assert_num_queries: Any
) -> None:
    runners = [exporter_down(f"r{i}") for i in range(size)]
    Runner.objects.filter(name="r0").update(
        trusted_until="2999-01-01T00:00:00Z", trusted_by="sam", trusted_reason="x"
    )
    env = make_env("staging", *runners, exporter_policy=SignalPolicy.ADVISORY)

    with django_assert_num_queries(1):
        chosen, pool = env.pick_runner()

    assert chosen is not None and chosen.name == "r0"
    assert len(pool) == size


@pytest.mark.parametrize(
    "column", ["heartbeat_policy", "exporter_policy", "canary_policy"]
)
def test_the_database_refuses_an_unknown_policy_for_every_signal(column: str) -> None:
    # What an UPDATE that skips the API's validation (a data migration, the shell)
    # would leave: eligibility could not judge a runner against it.
    env = make_env("staging", exporter_down())

    with pytest.raises(IntegrityError), transaction.atomic():
        Environment.objects.filter(pk=env.pk).update(**{column: "sometimes"})

    env.refresh_from_db()
    assert getattr(env, column) == SignalPolicy.REQUIRED
