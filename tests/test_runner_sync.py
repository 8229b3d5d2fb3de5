"""The runner registry sync against the GitHub simulator over HTTP."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.github import (
    GitHubGateway,
    GitHubUnavailable,
    RunnersPage,
    gateway_from_settings,
)
from controlplane.models import GitHubPurposeUsage, GitHubUsage, TaskStatus
from githubsim import Simulator
from runners import sync
from runners.models import Runner, RunnerEvent, RunnerSync, token_digest
from runners.tasks import sync_runners

pytestmark = [
    pytest.mark.django_db,
    # Sim time runs 60x: a killed host shows offline on GitHub at the next tick.
    pytest.mark.sim(time_scale=60, seed=3, offline_lag=0.0, job_duration=36000),
]

TOKEN = "ghp_sync_test_token"  # noqa: S105
TEMPLATE = "http://{name}.hosts.example:9100/metrics"


@pytest.fixture
def gw(sim: Simulator, settings: Any) -> GitHubGateway:
    settings.RUNNER_EXPORTER_URL_TEMPLATE = TEMPLATE
    return gateway_from_settings(base_url=sim.url, token=TOKEN, max_retries=0)


def remaining_budget(sim: Simulator) -> int:
    return sim.state.limits.budget(TOKEN)[1]


def test_first_sweep_registers_every_runner_with_its_github_fields(
    sim: Simulator, gw: GitHubGateway
) -> None:
    sim.add_runners(150, prefix="ci", labels=["build"])
    result = sync.sync_fleet(gw=gw)
    assert (result.pages, result.not_modified, result.listed, result.appeared) == (
        2,
        0,
        150,
        150,
    )
    runner = Runner.objects.get(name="ci-7")
    assert runner.github_id == sim.state.runner("ci-7").id
    assert runner.labels == ["self-hosted", "Linux", "X64", "build", "ci-7"]
    assert (runner.os, runner.github_status, runner.github_busy) == (
        "Linux",
        "online",
        False,
    )
    assert runner.github_seen_at is not None
    assert runner.first_seen_at == runner.github_seen_at
    assert runner.removed_at is None
    assert runner.exporter_url == "http://ci-7.hosts.example:9100/metrics"
    assert RunnerEvent.objects.filter(kind=RunnerEvent.Kind.APPEARED).count() == 150
    event = runner.events.get()
    assert (event.actor, event.message) == (
        "github-sync",
        "listed by GitHub for the first time",
    )


def test_unchanged_fleet_costs_no_budget_and_stays_fresh(
    sim: Simulator, gw: GitHubGateway
) -> None:
    sim.add_runners(250)
    start = timezone.now()
    sync.sync_fleet(start, gw=gw)
    before = remaining_budget(sim)
    later = start + timedelta(minutes=5)
    result = sync.sync_fleet(later, gw=gw)
    assert (result.pages, result.requests, result.not_modified) == (3, 3, 3)
    assert remaining_budget(sim) == before
    assert GitHubUsage.objects.get().not_modified_total == 3
    assert Runner.objects.filter(github_seen_at=later).count() == 250
    assert result.removed == 0
    assert not Runner.objects.filter(removed_at__isnull=False).exists()


def test_status_and_busy_changes_update_and_unchanged_pages_keep_their_runners(
    sim: Simulator, gw: GitHubGateway
) -> None:
    sim.add_runners(250)
    sync.sync_fleet(gw=gw)
    sim.kill("runner-150")
    sim.state.dispatch("acme/deploy", "deploy.yml", "main", {"runner": "runner-160"})
    assert sim.wait_until(
        lambda: (
            sim.state.runner("runner-150").status == "offline"
            and sim.state.runner("runner-160").busy
        )
    )
    result = sync.sync_fleet(gw=gw)
    # Only page 2 changed; pages 1 and 3 answered 304 and their runners stay listed.
    assert (result.pages, result.not_modified, result.removed) == (3, 2, 0)
    assert result.consistent
    assert Runner.objects.get(name="runner-150").github_status == "offline"
    assert Runner.objects.get(name="runner-160").github_busy is True
    assert Runner.objects.get(name="runner-161").github_busy is False
    assert Runner.objects.filter(removed_at__isnull=True).count() == 250


def test_runner_gone_from_github_is_marked_removed_and_kept_with_history(
    sim: Simulator, gw: GitHubGateway
) -> None:
    sim.add_runners(120)
    sync.sync_fleet(gw=gw)
    sim.remove_runner("runner-42")
    now = timezone.now()
    result = sync.sync_fleet(now, gw=gw)
    assert result.removed == 1
    gone = Runner.objects.get(name="runner-42")
    assert gone.removed_at == now
    event = gone.events.filter(kind=RunnerEvent.Kind.REMOVED).get()
    assert event.reasons == ["removed_from_github"]
    assert gone.events.filter(kind=RunnerEvent.Kind.APPEARED).exists()
    assert Runner.objects.active().count() == 119
    # Nothing else changed: the next sweep removes nobody again.
    assert sync.sync_fleet(gw=gw).removed == 0


def test_runner_registered_again_under_its_name_is_unremoved_with_new_id_and_labels(
    sim: Simulator, gw: GitHubGateway
) -> None:
    sim.add_runner("prod-1", ["production"])
    sim.add_runner("prod-2", ["production"])
    sync.sync_fleet(gw=gw)
    old_id = Runner.objects.get(name="prod-1").github_id
    sim.remove_runner("prod-1")
    sync.sync_fleet(gw=gw)
    sim.add_runner("prod-1", ["production", "primary"])
    result = sync.sync_fleet(gw=gw)
    runner = Runner.objects.get(name="prod-1")
    assert result.appeared == 1
    assert runner.removed_at is None
    assert runner.github_id == sim.state.runner("prod-1").id != old_id
    assert "primary" in runner.labels
    kinds = list(runner.events.order_by("pk").values_list("kind", "message"))
    assert kinds == [
        ("appeared", "listed by GitHub for the first time"),
        ("removed", "no longer listed by GitHub"),
        ("appeared", "listed by GitHub again"),
    ]


def test_runner_registered_by_an_admin_is_linked_and_keeps_its_exporter_url(
    sim: Simulator, gw: GitHubGateway
) -> None:
    own = "http://10.0.0.5:9100/metrics"
    Runner.objects.create(name="prod-1", exporter_url=own)
    Runner.objects.create(name="prod-2")
    sim.add_runner("prod-1")
    sim.add_runner("prod-2")
    sync.sync_fleet(gw=gw)
    one, two = Runner.objects.order_by("name")
    assert one.github_id == sim.state.runner("prod-1").id
    assert one.exporter_url == own
    assert two.exporter_url == "http://prod-2.hosts.example:9100/metrics"
    assert one.first_seen_at is not None
    assert one.events.get().message == "linked to its GitHub registration"


def test_list_changing_mid_sweep_removes_nobody_and_rereads_every_page(
    sim: Simulator, gw: GitHubGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.add_runners(200)
    sync.sync_fleet(gw=gw)
    sim.kill("runner-1")  # page 1 changes, so the next sweep reads it
    assert sim.wait_until(lambda: sim.state.runner("runner-1").status == "offline")
    original = gw.list_runners_page

    def list_then_delete(page: int = 1, *, etag: str | None = None) -> RunnersPage:
        answer = original(page, etag=etag)
        if page == 1:
            # runner-101 moves up to page 1 after it was read: page 2 skips it.
            sim.remove_runner("runner-5")
        return answer

    with monkeypatch.context() as patch:
        patch.setattr(gw, "list_runners_page", list_then_delete)
        result = sync.sync_fleet(gw=gw)
    assert not result.consistent
    assert result.removed == 0
    assert not Runner.objects.filter(removed_at__isnull=False).exists()
    assert all(page["etag"] is None for page in RunnerSync.objects.get().pages)
    # The next sweep reads every page (no ETag to send) and sees the list settled.
    again = sync.sync_fleet(gw=gw)
    assert (again.consistent, again.not_modified, again.removed) == (True, 0, 1)
    assert Runner.objects.get(name="runner-5").removed_at is not None


def test_query_count_grows_with_pages_not_runners(
    sim: Simulator, gw: GitHubGateway
) -> None:
    GitHubUsage.objects.create(pk=1)
    GitHubPurposeUsage.objects.create(purpose="sync")

    def first_sweep(size: int) -> int:
        sim.reset()
        sim.add_runners(size)
        Runner.objects.all().delete()
        RunnerSync.objects.all().delete()
        with CaptureQueriesContext(connection) as queries:
            sync.sync_fleet(gw=gw)
        assert Runner.objects.count() == size
        return len(queries)

    # Same number of pages, very different numbers of runners: same queries.
    assert first_sweep(101) == first_sweep(200)
    one, two, three = first_sweep(100), first_sweep(200), first_sweep(300)
    assert three - two == two - one


@pytest.mark.parametrize("size", [120, 190])
def test_unchanged_sweep_costs_the_same_queries_at_two_fleet_sizes(
    size: int,
    sim: Simulator,
    gw: GitHubGateway,
    django_assert_num_queries: Any,
) -> None:
    sim.add_runners(size)
    sync.sync_fleet(gw=gw)
    # Load the sync row, take the lease, 2 x (count a request, count its 304, both
    # again under the sync purpose), read the rate limit; in a savepoint: active
    # ids, seen_at, exporter URLs, the name-label check (pool runners, clearing
    # runners that left the pools: no pool here, so nothing to read), offline
    # since (set, clear), save pages.
    with django_assert_num_queries(21):
        result = sync.sync_fleet(gw=gw)
    assert result.not_modified == 2


def test_interval_keeps_steady_state_use_within_the_budget_share(
    settings: Any,
) -> None:
    settings.GITHUB_BUDGET_SHARE = 0.2
    settings.RUNNER_SYNC_MIN_INTERVAL = 15
    budget = sync.sync_budget(100)  # 10,000 runners, token limit unknown: 5,000/h
    assert budget.interval_seconds == pytest.approx(360.0)
    assert budget.requests_per_hour == pytest.approx(1000.0)
    assert budget.share_used == pytest.approx(0.2)
    assert sync.sync_budget(1).interval_seconds == 15.0  # the floor
    GitHubUsage.objects.create(pk=1, rate_limit_limit=12500)
    assert sync.sync_budget(100).interval_seconds == pytest.approx(144.0)


def test_sync_waits_for_its_interval_and_only_one_worker_claims_it(
    sim: Simulator, gw: GitHubGateway
) -> None:
    sim.add_runners(10)
    start = timezone.now()
    first = sync.sync_if_due(start, gw=gw)
    assert not first.skipped
    assert first.interval_seconds == 15.0
    assert sync.sync_if_due(start + timedelta(seconds=14), gw=gw).skipped
    assert not sync.is_due(start + timedelta(seconds=14), gw=gw)
    due = start + timedelta(seconds=15)
    assert sync.is_due(due, gw=gw)
    # A claim pushes next_sync_at ahead: a second worker at the same moment skips.
    RunnerSync.objects.update(next_sync_at=due)
    assert RunnerSync.objects.filter(next_sync_at__lte=due).update(
        next_sync_at=due + sync.SWEEP_LEASE
    )
    assert sync.sync_if_due(due, gw=gw).skipped


def test_failed_sweep_is_retried_after_the_shortest_interval(
    sim: Simulator, gw: GitHubGateway
) -> None:
    sim.add_runners(5)
    sim.set_faults(error_rate=1.0)
    now = timezone.now()
    with pytest.raises(GitHubUnavailable, match="list_runners_page"):
        sync.sync_if_due(now, gw=gw)
    assert RunnerSync.objects.get().next_sync_at == now + timedelta(seconds=15)
    assert not Runner.objects.exists()


def test_sync_task_uses_the_configured_gateway_and_records_its_run(
    sim: Simulator, settings: Any
) -> None:
    settings.GITHUB_API_URL = sim.url
    settings.GITHUB_TOKEN = TOKEN
    sim.add_runners(3)
    sync_runners()
    assert Runner.objects.count() == 3
    status = TaskStatus.objects.get(name="runner_sync")
    assert status.last_success_at is not None
    # Not due again yet: the task does nothing and records nothing.
    TaskStatus.objects.all().delete()
    sync_runners()
    assert not TaskStatus.objects.exists()


def test_demo_command_wires_tokens_and_exporters_once(
    sim: Simulator, settings: Any
) -> None:
    settings.GITHUB_API_URL = sim.url
    settings.GITHUB_TOKEN = TOKEN
    sim.add_runner("prod-1")
    sim.add_runner("prod-2")
    out = StringIO()
    call_command("demo", "--simulator", sim.url, stdout=out)
    assert "2 runners synced" in out.getvalue()
    assert "2 heartbeat tokens issued" in out.getvalue()
    for runner in Runner.objects.all():
        token = sim.state.runner(runner.name).heartbeat_token
        assert token is not None
        assert token_digest(token) == runner.heartbeat_token_digest
        assert token not in out.getvalue()
        assert runner.exporter_url == (f"{sim.url}/_sim/exporter/{runner.name}/metrics")
    # Both heartbeat now; the simulator restarts for prod-2 only (token lost).
    Runner.objects.update(heartbeat_deadline=timezone.now() + timedelta(seconds=20))
    sim.set_heartbeat_token("prod-2", "")
    kept = Runner.objects.get(name="prod-1").heartbeat_token_digest
    out = StringIO()
    call_command("demo", "--simulator", sim.url, stdout=out)
    assert "1 heartbeat tokens issued, 0 exporter URLs set" in out.getvalue()
    assert Runner.objects.get(name="prod-1").heartbeat_token_digest == kept
    assert sim.state.runner("prod-2").heartbeat_token is not None
