"""GitHub's runner version rules and the pool runners' name labels, through the
simulator over HTTP: the newest release read from the downloads endpoint, versions
from the sync, heartbeats and diagnostics, the flags, eligibility, the fleet filter,
the pages, the API and the metrics."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.test import Client
from django.utils import timezone

from controlplane.github import GitHubGateway, gateway_from_settings
from controlplane.models import GitHubPurposeUsage
from deploys.models import Environment
from githubsim import Simulator
from runners import name_labels, sync, versions
from runners.hygiene_fields import RunnerRelease, VersionStatus
from runners.models import Runner, RunnerEvent
from runners.tasks import check_runner_versions
from tests.factories import make_env, make_runner
from tests.simhttp import assert_rest_shape, get

pytestmark = [pytest.mark.django_db, pytest.mark.sim(connect=True, seed=5)]

DOWNLOADS = "/repos/{owner}/{repo}/actions/runners/downloads"


@pytest.fixture
def gw(sim: Simulator) -> GitHubGateway:
    return gateway_from_settings(base_url=sim.url, max_retries=0)


@pytest.fixture
def fleet(sim: Simulator, gw: GitHubGateway, settings: Any) -> Simulator:
    """Three runners synced from GitHub: current, far below, a few minors behind."""
    settings.RUNNER_VERSION_MINIMUM = "2.320.0"
    settings.RUNNER_VERSION_MAX_MINOR_BEHIND = 2
    for name in ("prod-1", "prod-2", "prod-3"):
        sim.add_runner(name)
    sim.set_runner_version("prod-2", "2.300.0")
    sim.set_runner_version("prod-3", "2.327.1")
    sync.sync_fleet(gw=gw)
    versions.run()
    return sim


def test_the_simulator_answers_the_downloads_in_githubs_shape(sim: Simulator):
    sim.configure(runner_version="2.331.0")
    for path in ("/repos/acme/deploy", "/orgs/acme"):
        body = assert_rest_shape(
            "GET", DOWNLOADS, get(sim, f"{path}/actions/runners/downloads")
        )
        assert {item["os"] for item in body} == {"osx", "linux", "win"}
        assert all(
            item["filename"].endswith(("2.331.0.tar.gz", "2.331.0.zip"))
            for item in body
        )
    bad = requests.post(
        f"{sim.url}/_sim/config", json={"runner_version": "latest"}, timeout=10
    )
    assert bad.status_code == 422


def test_the_simulators_control_api_updates_and_relabels_a_runner(sim: Simulator):
    sim.add_runner("prod-1")
    control = f"{sim.url}/_sim/runners/prod-1"
    updated = requests.post(
        f"{control}/version", json={"version": "2.301.0"}, timeout=10
    )
    relabelled = requests.post(f"{control}/labels", json={"labels": ["x"]}, timeout=10)
    assert (updated.status_code, relabelled.status_code) == (200, 200)
    listed = get(sim, "/repos/acme/deploy/actions/runners").json()["runners"][0]
    assert listed["version"] == "2.301.0"
    assert [label["name"] for label in listed["labels"]][-1] == "x"
    assert sim.state.runner("prod-1").version == "2.301.0"
    for action, body in (("version", {"version": "two"}), ("labels", {"labels": "x"})):
        refused = requests.post(f"{control}/{action}", json=body, timeout=10)
        assert refused.status_code == 422, refused.text


def test_the_newest_release_is_read_a_few_times_a_day_under_its_purpose(
    sim: Simulator, gw: GitHubGateway, settings: Any
):
    settings.RUNNER_VERSION_FETCH_HOURS = 6
    now = timezone.now()
    release = versions.refresh_latest(now, gw=gw)
    assert release is not None
    assert (release.latest_version, release.error) == ("2.330.0", "")
    assert release.next_fetch_at == now + timedelta(hours=6)
    # Not due again before six hours: no request at all.
    sim.configure(runner_version="2.331.0")
    assert versions.refresh_latest(now + timedelta(hours=5), gw=gw) is None
    assert GitHubPurposeUsage.objects.get(purpose="runner_versions").requests_total == 1
    later = versions.refresh_latest(now + timedelta(hours=6), gw=gw)
    assert later is not None and later.latest_version == "2.331.0"
    assert RunnerRelease.objects.count() == 1


def test_a_failed_read_keeps_the_last_version_and_retries_sooner(
    sim: Simulator, gw: GitHubGateway
):
    now = timezone.now()
    versions.refresh_latest(now, gw=gw)
    sim.set_faults(error_rate=1.0)
    release = versions.refresh_latest(now, gw=gw, force=True)
    assert release is not None
    assert release.latest_version == "2.330.0"
    assert "GitHub answered 503" in release.error
    assert release.next_fetch_at == now + versions.RETRY_AFTER


def test_version_rules_flag_runners_below_the_minimum_or_behind_the_latest(
    fleet: Simulator,
):
    rows = {
        r.name: (r.runner_version, r.runner_version_source, r.version_outdated)
        for r in Runner.objects.all()
    }
    assert rows == {
        "prod-1": ("2.330.0", "github", ""),
        "prod-2": ("2.300.0", "github", VersionStatus.BELOW_MINIMUM),
        "prod-3": ("2.327.1", "github", VersionStatus.BEHIND_LATEST),
    }
    assert Runner.objects.get(name="prod-3").version_note == (
        "2.327.1 is 3 minor versions behind the latest release 2.330.0 "
        "(at most 2 allowed)"
    )
    # The host is updated: the next sync and check clear the flag.
    fleet.set_runner_version("prod-2", "2.330.0")
    sync.sync_fleet(gw=gateway_from_settings(base_url=fleet.url))
    check_runner_versions()
    prod2 = Runner.objects.get(name="prod-2")
    assert (prod2.version_outdated, prod2.version_note) == ("", "")
    flags = prod2.events.filter(kind__in=["flagged", "unflagged"])
    assert list(flags.values_list("kind", "message", "actor")) == [
        ("unflagged", "version current again", "version-check"),
        (
            "flagged",
            "version outdated: 2.300.0 is below the minimum 2.320.0",
            "version-check",
        ),
    ]


def test_versions_come_from_heartbeats_and_diagnostics_when_github_gives_none(
    settings: Any,
):
    settings.RUNNER_VERSION_MINIMUM = "2.320.0"
    settings.RUNNER_VERSION_FOLLOW_LATEST = False
    beating = make_runner("beating", facts={"runner_version": "2.310.0"})
    reported = make_runner("reported")
    silent = make_runner("silent")
    versions.record_reported(reported.pk, "2.329.0")
    versions.record_reported(silent.pk, "not a version")
    assert versions.check() == 1
    for runner in (beating, reported, silent):
        runner.refresh_from_db()
    assert (beating.runner_version, beating.runner_version_source) == (
        "2.310.0",
        "heartbeat",
    )
    assert beating.version_outdated == VersionStatus.BELOW_MINIMUM
    assert (reported.runner_version, reported.runner_version_source) == (
        "2.329.0",
        "diagnostics",
    )
    # Unknown is never outdated.
    assert (silent.runner_version, silent.version_outdated) == ("", "")
    # A diagnostics report never overrides the heartbeat's reading.
    versions.record_reported(beating.pk, "2.329.0")
    beating.refresh_from_db()
    assert beating.runner_version == "2.310.0"


@pytest.mark.parametrize("size", [20, 200])
def test_the_check_costs_the_same_queries_at_two_fleet_sizes(
    size: int, settings: Any, django_assert_num_queries: Any
):
    settings.RUNNER_VERSION_MINIMUM = "2.320.0"
    settings.RUNNER_VERSION_FOLLOW_LATEST = False
    Runner.objects.bulk_create(
        Runner(name=f"r-{i}", facts={"runner_version": f"2.3{i % 4}0.0"})
        for i in range(size)
    )
    # Copy heartbeat versions, distinct versions, the runners whose flag changes;
    # in a savepoint: their events, one UPDATE of the flags.
    with django_assert_num_queries(7):
        assert versions.check() == size // 2
    assert Runner.objects.filter(version_outdated="below_minimum").count() == size // 2
    assert RunnerEvent.objects.filter(kind="flagged").count() == size // 2
    # Nothing changed since: three reads, no write.
    with django_assert_num_queries(3):
        assert versions.check() == 0


def test_eligibility_blocks_below_the_minimum_and_notes_behind_the_latest(
    fleet: Simulator,
):
    env = make_env("production", *Runner.objects.order_by("name"))
    Runner.objects.update(state="healthy", reason="")
    chosen, choices = env.pick_runner()
    assert chosen is not None and chosen.name == "prod-1"
    by_name = {choice.runner.name: choice for choice in choices}
    assert by_name["prod-2"].passed_over == [
        "runner version outdated: 2.300.0 is below the minimum 2.320.0"
    ]
    assert by_name["prod-3"].eligible
    assert by_name["prod-3"].notes == [
        "runner version outdated: 2.327.1 is 3 minor versions behind the latest "
        "release 2.330.0 (at most 2 allowed) (deploys still go to it)"
    ]
    # No trust override lifts it: GitHub would still refuse the job.
    prod2 = Runner.objects.get(name="prod-2")
    prod2.trusted_until = timezone.now() + timedelta(hours=1)
    prod2.trusted_reason = "checked by hand"
    assert not env.judge(prod2, timezone.now()).eligible


def test_the_fleet_filters_by_version_and_rule_in_the_page_and_the_api(
    fleet: Simulator, viewer_client: Client
):
    def names(query: dict[str, str]) -> list[str]:
        body = viewer_client.get("/api/v1/runners/", query).json()
        return [row["name"] for row in body["results"]]

    assert names({"version": "2.300.0"}) == ["prod-2"]
    assert names({"version": "v2.330.0"}) == ["prod-1"]
    assert names({"version_outdated": "true"}) == ["prod-2", "prod-3"]
    assert names({"version_outdated": "behind_latest"}) == ["prod-3"]
    assert names({"version_outdated": "false"}) == ["prod-1"]
    bad = viewer_client.get("/api/v1/runners/", {"version_outdated": "maybe"})
    assert bad.status_code == 400
    assert "version_outdated" in bad.json()
    row = viewer_client.get("/api/v1/runners/prod-2/").json()
    assert (row["runner_version"], row["version_outdated"]) == (
        "2.300.0",
        "below_minimum",
    )
    assert row["ineligibility_reasons"][0].startswith("runner version outdated")
    page = viewer_client.get("/fleet/", {"version_outdated": "true"}).content.decode()
    assert 'data-runner="prod-2"' in page and 'data-runner="prod-1"' not in page
    assert 'data-flag="version_outdated"' in page
    detail = viewer_client.get("/fleet/prod-2/").content.decode()
    assert 'id="version-outdated"' in detail
    assert "/runbooks/runner-version-outdated/" in detail


def test_metrics_count_outdated_runners_and_missing_name_labels(
    fleet: Simulator, client: Client, settings: Any
):
    Runner.objects.filter(name="prod-1").update(missing_name_label=True)
    text = client.get("/metrics").content.decode()
    assert (
        'controlplane_runner_version_outdated{rule="below_minimum",runner="prod-2",'
        'version="2.300.0"} 1.0'
    ) in text
    assert 'controlplane_runners_version_outdated{rule="behind_latest"} 1.0' in text
    assert 'controlplane_runner_missing_name_label{runner="prod-1"} 1.0' in text
    assert "controlplane_runners_missing_name_label 1.0" in text


# The name label -------------------------------------------------------------------


def test_a_pool_runner_without_its_name_label_is_flagged_at_sync_and_passed_over(
    sim: Simulator, gw: GitHubGateway, sre_client: Client
):
    sim.add_runner("prod-1")
    sim.add_runner("prod-2")
    sim.add_runner("ci-1")
    sync.sync_fleet(gw=gw)
    env = make_env("production", *Runner.objects.filter(name__startswith="prod"))
    Runner.objects.update(state="healthy", reason="")
    # Re-registered without --labels: the name label is gone, in a pool and not.
    sim.set_runner_labels("prod-1", ["deploy"])
    sim.set_runner_labels("ci-1", ["build"])
    sync.sync_fleet(gw=gw)
    flagged = set(
        Runner.objects.filter(missing_name_label=True).values_list("name", flat=True)
    )
    assert flagged == {"prod-1"}
    chosen, choices = env.pick_runner()
    assert chosen is not None and chosen.name == "prod-2"
    assert choices[0].passed_over == [
        "missing its name label prod-1: the deploy workflow's runs-on "
        "[self-hosted, prod-1] cannot reach it"
    ]
    api = sre_client.get("/api/v1/environments/production/").json()
    assert api["pool_status"][0]["ineligibility_reasons"][0].startswith(
        "missing its name label prod-1"
    )
    page = sre_client.get("/fleet/", {"missing_name_label": "true"}).content.decode()
    assert 'data-runner="prod-1"' in page and 'data-runner="prod-2"' not in page
    detail = sre_client.get("/fleet/prod-1/").content.decode()
    assert "/runbooks/runner-missing-name-label/" in detail
    # The label is back (matched case-insensitively, as GitHub does).
    sim.set_runner_labels("prod-1", ["deploy", "PROD-1"])
    sync.sync_fleet(gw=gw)
    assert not Runner.objects.filter(missing_name_label=True).exists()
    events = Runner.objects.get(name="prod-1").events.filter(
        kind__in=["flagged", "unflagged"]
    )
    assert list(events.values_list("message", flat=True)) == [
        "carries its name label prod-1 again",
        "missing its name label prod-1",
    ]


def test_adding_a_runner_to_a_pool_flags_it_and_leaving_the_pool_clears_it(
    sim: Simulator, gw: GitHubGateway, admin_client_: Client
):
    sim.add_runner("prod-1")
    sim.add_runner("prod-2")
    sim.set_runner_labels("prod-2", [])
    sync.sync_fleet(gw=gw)
    assert not Runner.objects.filter(missing_name_label=True).exists()
    body = {
        "name": "production",
        "repository": "acme/deploy",
        "pool": ["prod-1", "prod-2"],
    }
    created = admin_client_.post(
        "/api/v1/environments/", json.dumps(body), content_type="application/json"
    )
    assert created.status_code == 201, created.content
    assert Runner.objects.get(name="prod-2").missing_name_label
    changed = admin_client_.patch(
        "/api/v1/environments/production/",
        json.dumps({"pool": ["prod-1"]}),
        content_type="application/json",
    )
    assert changed.status_code == 200, changed.content
    assert not Runner.objects.filter(missing_name_label=True).exists()


def test_runners_whose_labels_github_never_listed_are_not_flagged():
    unseen = make_runner("registered-early")
    make_env("production", unseen)
    assert name_labels.flag() == 0
    unseen.refresh_from_db()
    assert not unseen.missing_name_label
    why = Environment.objects.get().pick_runner()[1][0].passed_over
    assert not [reason for reason in why if "name label" in reason]


def test_the_admin_pool_form_flags_and_warns_about_a_runner_without_its_name_label(
    admin_client: Client,
) -> None:
    from tests.test_admin_audit import env_form

    env = make_env()
    labelled = make_runner("prod-1", github_id=1, labels=["self-hosted", "prod-1"])
    bare = make_runner("prod-2", github_id=2, labels=["self-hosted", "deploy"])
    response = admin_client.post(
        f"/admin/deploys/environment/{env.pk}/change/",
        env_form(
            env,
            **{
                "pool_entries-TOTAL_FORMS": "2",
                "pool_entries-0-runner": str(labelled.pk),
                "pool_entries-0-position": "0",
                "pool_entries-1-runner": str(bare.pk),
                "pool_entries-1-position": "1",
            },
        ),
        follow=True,
    )
    assert response.status_code == 200
    warnings = [str(m) for m in response.context["messages"]]
    assert any(
        w.startswith("prod-2 in the pool of production do not carry their own name")
        for w in warnings
    ), warnings
    bare.refresh_from_db()
    labelled.refresh_from_db()
    assert (bare.missing_name_label, labelled.missing_name_label) == (True, False)


def test_an_organization_gateway_reads_the_organizations_downloads(
    sim: Simulator,
) -> None:
    org_gw = gateway_from_settings(base_url=sim.url, organization="acme", max_retries=0)
    sim.configure(runner_version="2.331.2")
    release = versions.refresh_latest(timezone.now(), gw=org_gw)
    assert release is not None
    assert (release.scope, release.latest_version) == (
        "/orgs/acme/actions/runners/downloads",
        "2.331.2",
    )
    assert sim.state.request_count("GET /orgs/{org}/actions/runners/downloads") == 1


def test_a_diagnostics_report_tells_the_version_of_a_runner_nothing_else_reports(
    settings: Any,
) -> None:
    from tests.factories import runner_with_token
    from tests.test_diagnostics_api import in_flight, post, report

    settings.RUNNER_VERSION_MINIMUM = "2.331.0"
    settings.RUNNER_VERSION_FOLLOW_LATEST = False
    runner, token = runner_with_token("prod-9")
    run = in_flight(runner)
    assert post({"token": run.token, "report": report()}, token).status_code == 201
    versions.check()
    runner.refresh_from_db()
    assert (runner.runner_version, runner.runner_version_source) == (
        "2.330.0",
        "diagnostics",
    )
    assert runner.version_outdated == VersionStatus.BELOW_MINIMUM


def test_the_gate_passes_over_a_flagged_runner_and_lists_why(
    sim: Simulator, gw: GitHubGateway, sre: Any, settings: Any
) -> None:
    from deploys import engine
    from deploys.models import DeployRun
    from deploys.triggers import request_deploy
    from tests.deploying import PRIMARY, SECONDARY, simulated_env

    settings.RUNNER_VERSION_MINIMUM = "2.320.0"
    env = simulated_env(sim, (PRIMARY, SECONDARY, "prod-old"))
    sim.set_runner_labels(PRIMARY, ["production"])
    sim.set_runner_version("prod-old", "2.310.0")
    sync.sync_fleet(gw=gw)
    versions.check()
    run = request_deploy(sre, env).run
    run = DeployRun.objects.select_related("environment").get(pk=run.pk)

    decision = engine.decide(run, timezone.now())

    assert decision.runner is not None and decision.runner.name == SECONDARY
    why = {entry["runner"]: entry["passed_over"] for entry in decision.considered}
    assert why[PRIMARY] == [
        f"missing its name label {PRIMARY}: the deploy workflow's runs-on "
        f"[self-hosted, {PRIMARY}] cannot reach it"
    ]
    assert why["prod-old"] == [
        "runner version outdated: 2.310.0 is below the minimum 2.320.0"
    ]
