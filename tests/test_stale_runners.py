"""Runners GitHub has reported offline for long are proposed for removal; an SRE
removes them from GitHub (through the simulator), never a runner in a pool."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from controlplane.models import AuditEvent, GitHubPurposeUsage
from githubsim import Simulator
from runners import retention, sync
from runners.models import Runner, RunnerEvent
from runners.retention_metrics import StaleRunnerCollector
from tests.conftest import logged_in
from tests.factories import make_env, make_runner

pytestmark = [
    pytest.mark.django_db,
    # Sim time runs 60x: a killed host shows offline on GitHub at the next tick.
    pytest.mark.sim(time_scale=60, seed=3, offline_lag=0.0, connect=True),
]

DAY = timedelta(days=1)


def offline_runner(name: str, days: float, **kw: Any) -> Runner:
    """A runner the sync has seen offline for ``days``."""
    kw.setdefault("github_status", "offline")
    return make_runner(name, offline_since=timezone.now() - timedelta(days=days), **kw)


def synced_offline(sim: Simulator, name: str) -> Runner:
    """``name`` registered in the simulator, synced, killed, synced again: GitHub
    reports it offline and the registry knows since when."""
    sim.add_runner(name, ["self-hosted", name])
    sync.sync_fleet()
    sim.kill(name)
    assert sim.wait_until(lambda: sim.state.runner(name).status == "offline")
    sync.sync_fleet()
    return Runner.objects.get(name=name)


def test_the_sync_records_when_it_first_saw_a_runner_offline(sim: Simulator) -> None:
    sim.add_runner("build-1", ["self-hosted"])
    sim.add_runner("build-2", ["self-hosted"])
    first = timezone.now()
    sync.sync_fleet(first)
    assert Runner.objects.get(name="build-1").offline_since is None

    sim.kill("build-1")
    assert sim.wait_until(lambda: sim.state.runner("build-1").status == "offline")
    sync.sync_fleet(first + DAY)
    assert Runner.objects.get(name="build-1").offline_since == first + DAY
    # Later sweeps keep the first sighting; the online runner has none.
    sync.sync_fleet(first + 2 * DAY)
    assert Runner.objects.get(name="build-1").offline_since == first + DAY
    assert Runner.objects.get(name="build-2").offline_since is None

    sim.revive("build-1")
    assert sim.wait_until(lambda: sim.state.runner("build-1").status == "online")
    sync.sync_fleet(first + 3 * DAY)
    assert Runner.objects.get(name="build-1").offline_since is None


def test_runners_offline_past_the_setting_are_proposed_with_when_github_removes_them(
    settings: Any,
) -> None:
    settings.RUNNER_STALE_AFTER_DAYS = 12
    old = offline_runner("old-1", 13)
    pooled = offline_runner("pooled-1", 12.5)
    offline_runner("recent-1", 5)
    offline_runner("gone-1", 13, removed_at=timezone.now())
    make_runner("online-1", github_status="online")
    make_env("production", make_runner("primary-1"), pooled)
    now = timezone.now()

    stale = retention.stale_runners(now)

    assert [item.runner.name for item in stale] == ["old-1", "pooled-1"]
    first = stale[0]
    assert first.offline_for.days == 13
    assert old.offline_since is not None
    assert first.github_removes_by == old.offline_since + timedelta(days=14)
    assert first.reason.startswith("GitHub has reported it offline for 13 days")
    assert first.removable and first.pools == ()
    assert stale[1].pools == (("production", 1),) and not stale[1].removable


@pytest.mark.parametrize("size", [3, 40])
def test_the_page_costs_the_same_queries_at_two_sizes(
    size: int, viewer: User, django_assert_num_queries: Any
) -> None:
    runners = [offline_runner(f"old-{i:03d}", 13) for i in range(size)]
    make_env("production", runners[0])
    make_env("staging", runners[1], runners[2])
    client = logged_in(viewer)
    client.get("/")  # the session's first request saves it
    # Session, user, role groups; stale runners, their pool entries; the stopped
    # background jobs banner.
    with django_assert_num_queries(6):
        response = client.get("/retention/")
    assert response.status_code == 200
    assert response.content.count(b"data-runner=") == size


def test_an_sre_removes_a_stale_runner_from_github_and_the_registry(
    sim: Simulator, sre: User
) -> None:
    runner = synced_offline(sim, "old-1")
    Runner.objects.filter(pk=runner.pk).update(
        offline_since=timezone.now() - timedelta(days=13)
    )

    response = logged_in(sre).post("/retention/old-1/remove/", follow=True)

    assert response.status_code == 200
    assert b"old-1 is removed from GitHub" in response.content
    assert sim.state.find_runner("old-1") is None
    runner.refresh_from_db()
    assert runner.removed_at is not None
    event = runner.events.get(kind=RunnerEvent.Kind.REMOVED)
    assert event.actor == "sam-sre"
    assert event.message == "removed from GitHub after 13 days offline"
    audit = AuditEvent.objects.get(action="runner.remove")
    assert (audit.actor_name, audit.outcome) == ("sam-sre", "success")
    assert audit.target_repr == "old-1"
    # The one DELETE is counted in the API budget under its own purpose.
    usage = GitHubPurposeUsage.objects.get(purpose="runner_removal")
    assert usage.requests_total == 1
    # The next sweep agrees: GitHub no longer lists it, nothing appears again.
    result = sync.sync_fleet()
    assert (result.appeared, result.removed) == (0, 0)
    assert b"old-1" not in logged_in(sre).get("/retention/").content


def test_a_runner_in_a_pool_is_never_removed(sim: Simulator, sre: User) -> None:
    runner = synced_offline(sim, "pooled-1")
    make_env("production", runner)

    response = logged_in(sre).post("/retention/pooled-1/remove/", follow=True)

    assert b"is in the runner pool of production (position 0)" in response.content
    assert sim.state.find_runner("pooled-1") is not None
    runner.refresh_from_db()
    assert runner.removed_at is None
    audit = AuditEvent.objects.get(action="runner.remove")
    assert audit.outcome == "denied"
    assert "take it out of the pool" in audit.detail["refused"]


def test_an_online_runner_is_not_removed(sim: Simulator, sre: User) -> None:
    sim.add_runner("busy-1", ["self-hosted"])
    sync.sync_fleet()
    with pytest.raises(retention.RemovalRefused, match="does not report busy-1"):
        retention.remove(Runner.objects.get(name="busy-1"), sre, timezone.now())
    assert sim.state.find_runner("busy-1") is not None


def test_a_runner_github_already_removed_is_marked_removed(
    sim: Simulator, sre: User
) -> None:
    runner = synced_offline(sim, "old-1")
    sim.remove_runner("old-1")
    retention.remove(runner, sre, timezone.now())
    runner.refresh_from_db()
    assert runner.removed_at is not None
    assert AuditEvent.objects.get(action="runner.remove").detail[
        "github_had_removed_it"
    ]


def test_viewers_see_the_proposal_but_no_remove_button(viewer: User, sre: User) -> None:
    offline_runner("old-1", 13)
    page = logged_in(viewer).get("/retention/").content.decode()
    assert "old-1" in page and "An SRE can remove it." in page
    assert "Remove from GitHub" not in page
    assert logged_in(viewer).post("/retention/old-1/remove/").status_code == 403
    assert "Remove from GitHub" in logged_in(sre).get("/retention/").content.decode()


def test_the_api_lists_stale_runners_and_removes_one(
    sim: Simulator, sre: User, viewer: User
) -> None:
    runner = synced_offline(sim, "old-1")
    Runner.objects.filter(pk=runner.pk).update(
        offline_since=timezone.now() - timedelta(days=13)
    )
    pooled = offline_runner("pooled-1", 13)
    make_env("production", pooled)

    listed = logged_in(viewer).get("/api/v1/stale-runners/").json()
    assert [(r["name"], r["removable"]) for r in listed["results"]] == [
        ("old-1", True),
        ("pooled-1", False),
    ]
    assert listed["results"][1]["pools"] == [
        {"environment": "production", "position": 0}
    ]
    api = logged_in(sre)
    refused = api.post("/api/v1/stale-runners/pooled-1/remove/")
    assert refused.status_code == 409
    assert "take it out of the pool" in refused.json()["detail"]
    removed = api.post("/api/v1/stale-runners/old-1/remove/")
    assert removed.status_code == 200
    assert removed.json()["name"] == "old-1"
    assert sim.state.find_runner("old-1") is None
    assert Client().post("/api/v1/stale-runners/old-1/remove/").status_code == 401


@pytest.mark.parametrize(("value", "accepted"), [("13", True), ("14", False)])
def test_the_stale_setting_stays_below_githubs_own_removal(
    value: str, accepted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runners import retention_conf

    monkeypatch.setenv("RUNNER_STALE_AFTER_DAYS", value)
    try:
        if accepted:
            importlib.reload(retention_conf)
            assert retention_conf.stale_after() == timedelta(days=13)
        else:
            with pytest.raises(ImproperlyConfigured, match="must be below 14"):
                importlib.reload(retention_conf)
    finally:
        monkeypatch.undo()
        importlib.reload(retention_conf)
    assert retention_conf.stale_after() == timedelta(days=12)


@pytest.mark.parametrize("size", [2, 30])
def test_metrics_count_stale_runners_in_one_query(
    size: int, client: Client, django_assert_num_queries: Any
) -> None:
    runners = [offline_runner(f"old-{i:03d}", 13) for i in range(size)]
    offline_runner("recent-1", 2)
    # In two pools, counted once.
    make_env("production", runners[0])
    make_env("staging", runners[0])
    with django_assert_num_queries(1):
        (family,) = StaleRunnerCollector().collect()
    assert {s.labels["in_pool"]: s.value for s in family.samples} == {
        "true": 1,
        "false": size - 1,
    }
    assert (
        'controlplane_runners_stale{in_pool="false"}'
        in client.get("/metrics").content.decode()
    )


def test_the_runner_page_says_since_when_github_reports_it_offline(
    viewer: User,
) -> None:
    runner = offline_runner("old-1", 13)
    assert runner.offline_since is not None
    page = logged_in(viewer).get("/fleet/old-1/").content.decode()
    assert f"{runner.offline_since:%Y-%m-%d %H:%M} UTC" in page
    assert 'href="/retention/"' in page
    make_runner("online-1", github_status="online")
    assert (
        "data-offline-since"
        not in logged_in(viewer).get("/fleet/online-1/").content.decode()
    )


@pytest.mark.parametrize("size", [3, 40])
def test_the_api_list_costs_the_same_queries_at_two_sizes(
    size: int, viewer: User, django_assert_num_queries: Any
) -> None:
    runners = [offline_runner(f"old-{i:03d}", 13) for i in range(size)]
    make_env("production", runners[0], runners[1])
    client = logged_in(viewer)
    client.get("/")
    # Session, user, role groups; the count, the page of runners, their pools.
    with django_assert_num_queries(6):
        response = client.get("/api/v1/stale-runners/")
    assert response.json()["count"] == size
