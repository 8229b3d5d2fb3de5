"""The fleet pages: /fleet/ (counts, coverage, filters, live partial, query counts) and
/fleet/<name>/ (timeline, eligibility, runbook, events, jobs, drain/undrain forms)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys.models import Environment, WorkflowJob
from runners.hygiene_fields import VersionStatus
from runners.models import Flag, Reason, Runner, RunnerEvent, State
from runners.views import format_age, health_timeline
from tests.conftest import logged_in
from tests.factories import make_runner

pytestmark = pytest.mark.django_db

URL = "/fleet/"


def make_fleet(count: int, **kw: Any) -> None:
    now = timezone.now()
    states = list(State)
    Runner.objects.bulk_create(
        Runner(
            name=f"bulk-{i:05d}",
            labels=["self-hosted", "linux", f"pool-{i % 3}"],
            state=states[i % len(states)],
            last_heartbeat_at=now - timedelta(seconds=i % 40),
            heartbeat_deadline=now + timedelta(seconds=20 - i % 40),
            github_status="online",
            github_seen_at=now,
            **kw,
        )
        for i in range(count)
    )


def row_names(html: str) -> list[str]:
    return re.findall(r'<tr data-runner="([^"]+)"', html)


def count_of(html: str, key: str) -> int:
    match = re.search(rf'data-count="{key}"[^>]*>\s*<span class="figure">(\d+)<', html)
    assert match, f"no count for {key}"
    return int(match.group(1))


# Fleet page ---------------------------------------------------------------------------


def test_fleet_page_counts_states_drained_removed_and_signal_coverage(
    viewer_client: Client,
) -> None:
    now = timezone.now()
    make_runner(
        name="fresh-everything",
        state=State.HEALTHY,
        heartbeat_deadline=now + timedelta(seconds=10),
        last_heartbeat_at=now,
        github_status="online",
        github_seen_at=now,
        exporter_ok=True,
        exporter_checked_at=now,
    )
    make_runner(
        name="stale-heartbeat",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        heartbeat_deadline=now - timedelta(seconds=1),
        last_heartbeat_at=now - timedelta(seconds=21),
        github_status="online",
        github_seen_at=now - timedelta(hours=2),  # stale GitHub reading
    )
    make_runner(name="degraded", state=State.DEGRADED, drained=True)
    make_runner(name="gone", state=State.UNHEALTHY, removed_at=now)

    response = viewer_client.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert [count_of(html, s) for s in State] == [1, 1, 1, 0]
    assert count_of(html, "drained") == 1
    assert count_of(html, "removed") == 1
    coverage = response.context["coverage"]
    assert [(c.signal, c.fresh, c.total) for c in coverage] == [
        ("GitHub status", 1, 3),
        ("Heartbeat", 1, 3),
        ("Exporter", 1, 3),
    ]
    # Removed runners are history: hidden unless asked for.
    assert row_names(html) == ["degraded", "fresh-everything", "stale-heartbeat"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "unhealthy"}, ["b-stale"]),
        ({"reason": "disk_low"}, ["c-disk"]),
        ({"label": "GPU"}, ["c-disk"]),
        ({"drained": "true"}, ["a-ok"]),
        ({"drained": "false"}, ["b-stale", "c-disk"]),
        ({"removed": "true"}, ["d-removed"]),
        ({"removed": "any"}, ["a-ok", "b-stale", "c-disk", "d-removed"]),
        ({"q": "stale"}, ["b-stale"]),
        ({"q": "gpu"}, ["c-disk"]),
        ({"state": "healthy", "drained": "true"}, ["a-ok"]),
    ],
)
def test_fleet_table_filters(
    viewer_client: Client, query: dict[str, str], expected: list[str]
) -> None:
    now = timezone.now()
    make_runner(name="a-ok", state=State.HEALTHY, drained=True, labels=["linux"])
    make_runner(
        name="b-stale",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        labels=["linux", "gpu-large"],
    )
    make_runner(
        name="c-disk", state=State.DEGRADED, reason=Reason.DISK_LOW, labels=["gpu"]
    )
    make_runner(name="d-removed", removed_at=now, labels=["linux"])

    response = viewer_client.get(URL, query)

    assert row_names(response.content.decode()) == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        # Primary, or behind a worse reason the latest observation also gives.
        ("canary_failed", ["canary-only", "disk-and-canary"]),
        ("disk_low", ["disk-and-canary"]),
        ("version_outdated", ["old-version"]),
        ("missing_name_label", ["no-name-label"]),
    ],
)
def test_the_reason_filter_offers_the_runner_flags_like_other_reasons(
    viewer_client: Client, reason: str, expected: list[str]
) -> None:
    fresh = Flag.HEARTBEAT_FRESH | Flag.GITHUB_ONLINE
    make_runner(
        name="canary-only",
        state=State.DEGRADED,
        reason=Reason.CANARY_FAILED,
        canary_failing=True,
        observed_flags=fresh | Flag.CANARY_FAILED,
    )
    make_runner(
        name="disk-and-canary",
        state=State.DEGRADED,
        reason=Reason.DISK_LOW,
        canary_failing=True,
        observed_flags=fresh | Flag.DISK_LOW | Flag.CANARY_FAILED,
    )
    make_runner(
        name="old-version",
        state=State.HEALTHY,
        reason=Reason.NONE,
        observed_flags=fresh,
        version_outdated=VersionStatus.BELOW_MINIMUM,
    )
    make_runner(
        name="no-name-label",
        state=State.HEALTHY,
        reason=Reason.NONE,
        observed_flags=fresh,
        missing_name_label=True,
    )
    make_runner(name="well", state=State.HEALTHY, observed_flags=fresh)

    page = viewer_client.get(URL, {"reason": reason}).content.decode()
    api = viewer_client.get("/api/v1/runners/", {"reason": reason})

    select = page[page.index('id="id_reason"') :]
    select = select[: select.index("</select>")]
    assert f'<option value="{reason}" selected>' in select
    assert "errorlist" not in page
    assert row_names(page) == expected
    assert api.status_code == 200
    assert [r["name"] for r in api.json()["results"]] == expected


def test_fleet_table_shows_pool_places_and_filters_by_environment(
    viewer_client: Client,
) -> None:
    primary = make_runner(name="prod-1")
    secondary = make_runner(name="prod-2")
    make_runner(name="stray")
    Environment.objects.create(name="production", repository="acme/app").set_pool(
        [primary, secondary]
    )

    everyone = viewer_client.get(URL).content.decode()
    production = viewer_client.get(URL, {"environment": "production"}).content.decode()

    assert row_names(production) == ["prod-1", "prod-2"]
    assert row_names(everyone) == ["prod-1", "prod-2", "stray"]
    assert re.search(r'production</a> <span class="muted">primary<', everyone)
    assert re.search(r'production</a> <span class="muted">secondary #1<', everyone)


def test_fleet_table_pages_by_50_in_name_order(viewer_client: Client) -> None:
    make_fleet(60)

    first = viewer_client.get(URL).content.decode()
    second = viewer_client.get(URL, {"page": 2}).content.decode()

    assert row_names(first) == [f"bulk-{i:05d}" for i in range(50)]
    assert row_names(second) == [f"bulk-{i:05d}" for i in range(50, 60)]
    assert "Page 2 of 2" in second


def test_htmx_poll_gets_only_the_live_partial_with_the_same_query(
    viewer_client: Client,
) -> None:
    make_runner(name="linux-1", state=State.HEALTHY)
    make_runner(name="linux-2", state=State.UNHEALTHY)

    page = viewer_client.get(URL, {"state": "unhealthy"})
    partial = viewer_client.get(URL, {"state": "unhealthy"}, HTTP_HX_REQUEST="true")

    page_html, partial_html = page.content.decode(), partial.content.decode()
    assert "<html" in page_html and "<html" not in partial_html
    assert '<form method="get" class="filters"' not in partial_html
    # The page polls the URL it was loaded from, and gets the same rows back.
    assert 'hx-get="/fleet/?state=unhealthy"' in page_html
    assert 'hx-trigger="every 5s"' in page_html
    assert row_names(partial_html) == row_names(page_html) == ["linux-2"]
    assert "HX-Request" in partial["Vary"]


def fleet_queries(client: Client, **params: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, params)
    assert response.status_code == 200
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize(
    ("params", "htmx", "expected"),
    [
        # session, user, role groups, the counts aggregate, the page count, the
        # page, the page's pool places; the full page adds the GitHub usage (for the
        # sync budget), the last sync and the stopped-jobs banner.
        ({}, False, 10),
        ({"state": "healthy", "label": "linux"}, False, 10),
        ({"state": "healthy", "label": "linux"}, True, 7),
    ],
)
def test_fleet_page_query_count_does_not_grow_with_the_fleet(
    viewer: User,
    params: dict[str, str],
    htmx: bool,
    expected: int,
    django_assert_num_queries: Any,
) -> None:
    client = logged_in(viewer)
    client.get("/")  # the session's first request saves it; later ones do not
    if htmx:
        client.defaults["HTTP_HX_REQUEST"] = "true"
    make_fleet(10)
    small = fleet_queries(client, **params)
    Runner.objects.all().delete()
    make_fleet(300)

    with django_assert_num_queries(expected):
        large = fleet_queries(client, **params)

    assert len(small) == len(large)
    aggregates = [sql for sql in large if "COUNT" in sql and "runners_runner" in sql]
    # One aggregate for every count and coverage figure, one for the paginator.
    assert len(aggregates) == 2


def test_fleet_page_shows_the_sync_budget(viewer_client: Client) -> None:
    make_fleet(250)

    response = viewer_client.get(URL)

    budget = response.context["budget"]
    assert budget.pages_per_sweep == 3
    html = response.content.decode()
    assert 'id="sync-budget"' in html
    assert f"{budget.rate_limit} requests/hour" in html


def test_fleet_page_needs_a_role(outsider: User) -> None:
    assert logged_in(outsider).get(URL).status_code == 403


def test_format_age() -> None:
    assert format_age(None) == "never"
    assert format_age(timedelta(seconds=7)) == "7 s"
    assert format_age(timedelta(minutes=5)) == "5 min"
    assert format_age(timedelta(hours=5)) == "5 h"
    assert format_age(timedelta(days=3)) == "3 d"


# Health timeline ------------------------------------------------------------------------


def transition(runner: Runner, at: datetime, old: State, new: State) -> None:
    RunnerEvent.objects.create(
        runner=runner,
        kind=RunnerEvent.Kind.STATE_CHANGE,
        from_state=old,
        to_state=new,
        created_at=at,
    )


def test_timeline_starts_from_the_state_before_the_window_and_follows_transitions() -> (
    None
):
    now = timezone.now()
    runner = make_runner(created=now - timedelta(days=3), state=State.UNHEALTHY)
    transition(runner, now - timedelta(hours=30), State.UNKNOWN, State.HEALTHY)
    transition(runner, now - timedelta(hours=6), State.HEALTHY, State.DEGRADED)
    transition(runner, now - timedelta(hours=3), State.DEGRADED, State.UNHEALTHY)
    # Other kinds of events do not cut the bar.
    RunnerEvent.objects.create(
        runner=runner,
        kind=RunnerEvent.Kind.DRAINED,
        created_at=now - timedelta(hours=1),
    )

    timeline = health_timeline(runner, now)

    assert [(s.state, round(s.seconds / 3600)) for s in timeline.segments] == [
        ("healthy", 18),
        ("degraded", 3),
        ("unhealthy", 3),
    ]
    assert timeline.healthy_percent == 75.0


def test_timeline_of_a_new_runner_starts_when_it_was_registered() -> None:
    now = timezone.now()
    runner = make_runner(created=now - timedelta(hours=12), state=State.HEALTHY)
    transition(runner, now - timedelta(hours=9), State.UNKNOWN, State.HEALTHY)

    timeline = health_timeline(runner, now)

    assert [(s.state, round(s.seconds / 3600)) for s in timeline.segments] == [
        ("none", 12),
        ("unknown", 3),
        ("healthy", 9),
    ]
    assert timeline.healthy_percent == 75.0


def test_timeline_without_transitions_is_the_current_state() -> None:
    now = timezone.now()
    runner = make_runner(created=now - timedelta(days=5), state=State.HEALTHY)

    timeline = health_timeline(runner, now)

    assert [s.state for s in timeline.segments] == ["healthy"]
    assert timeline.healthy_percent == 100.0


# Runner detail ----------------------------------------------------------------------------


def test_detail_shows_why_not_eligible_runbook_facts_events_and_jobs(
    viewer_client: Client,
) -> None:
    now = timezone.now()
    runner = make_runner(
        name="linux-prod-1",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        facts={"runner_version": "2.321.0", "disk_free_bytes": 123},
        last_heartbeat_at=now - timedelta(seconds=45),
        heartbeat_deadline=now - timedelta(seconds=25),
        created=now - timedelta(days=2),
    )
    runner.drain("sam-sre", "kernel upgrade")
    transition(runner, now - timedelta(hours=1), State.HEALTHY, State.UNHEALTHY)
    WorkflowJob.objects.create(
        github_id=77,
        run_id=7,
        name="deploy production",
        status=WorkflowJob.Status.COMPLETED,
        conclusion="success",
        runner_name="linux-prod-1",
        created_at=now,
    )
    WorkflowJob.objects.create(
        github_id=78,
        run_id=8,
        name="someone else's job",
        status=WorkflowJob.Status.COMPLETED,
        runner_name="linux-prod-2",
        created_at=now,
    )

    response = viewer_client.get("/fleet/linux-prod-1/")

    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["ineligible"] == [
        "drained by sam-sre: kernel upgrade",
        f"unhealthy ({Reason.HEARTBEAT_STALE.label})",
    ]
    assert 'href="/runbooks/runner-heartbeat-stale/"' in html
    assert "2.321.0" in html
    assert "deploy production" in html and "someone else" not in html
    assert "kernel upgrade" in html
    assert [line.event.kind for line in response.context["events"]] == [
        "drained",
        "state_change",
    ]
    assert [s.state for s in response.context["timeline"].segments] == [
        "healthy",
        "unhealthy",
    ]
    # Viewers see no drain form.
    assert 'action="/fleet/linux-prod-1/undrain/"' not in html


def test_detail_of_an_eligible_runner_says_so(viewer_client: Client) -> None:
    make_runner(name="ok-1", state=State.HEALTHY, reason=Reason.NONE)

    response = viewer_client.get("/fleet/ok-1/")

    assert response.context["ineligible"] == []
    assert 'id="eligible"' in response.content.decode()


def test_detail_query_count_does_not_grow_with_history(
    viewer_client: Client, django_assert_num_queries: Any
) -> None:
    now = timezone.now()
    runner = make_runner(name="busy", created=now - timedelta(days=2))
    for i in range(200):
        # Alternating, so that no two neighbours collapse into one line.
        states = (State.UNKNOWN, State.HEALTHY)[:: 1 if i % 2 else -1]
        transition(runner, now - timedelta(minutes=5 * i + 1), *states)

    viewer_client.get("/")  # the session's first request saves it
    # session, user, role groups, runner, its pools, 2 timeline queries, events,
    # jobs, the stopped-jobs banner, the newest runner release (version card), the
    # diagnostics panel's runs, the canary strip.
    with django_assert_num_queries(13):
        response = viewer_client.get("/fleet/busy/")

    assert response.status_code == 200
    assert len(response.context["events"]) == 50


def test_unknown_runner_is_404(viewer_client: Client) -> None:
    assert viewer_client.get("/fleet/nope/").status_code == 404


# Drain / undrain forms ------------------------------------------------------------------


def test_sre_drains_with_a_reason_and_it_is_audited(sre: User) -> None:
    runner = make_runner(name="linux-prod-1", state=State.HEALTHY)
    client = logged_in(sre)

    response = client.post(
        "/fleet/linux-prod-1/drain/", {"reason": "  disk replacement  "}
    )

    assert response.status_code == 302
    assert response["Location"] == "/fleet/linux-prod-1/"
    runner.refresh_from_db()
    assert runner.drained and runner.drained_reason == "disk replacement"
    assert runner.drained_by == "sam-sre"
    audit = AuditEvent.objects.get(action="runner.drain")
    assert audit.actor_name == "sam-sre" and audit.target_id == str(runner.pk)
    page = client.get("/fleet/linux-prod-1/").content.decode()
    assert 'action="/fleet/linux-prod-1/undrain/"' in page


def test_drain_without_a_reason_is_refused_and_says_why(sre: User) -> None:
    runner = make_runner(name="linux-prod-1")

    response = logged_in(sre).post("/fleet/linux-prod-1/drain/", {"reason": "  "})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    runner.refresh_from_db()
    assert not runner.drained
    assert not AuditEvent.objects.filter(action="runner.drain").exists()


def test_sre_undrains(sre: User) -> None:
    runner = make_runner(name="linux-prod-1")
    runner.drain("sam-sre", "maintenance")

    response = logged_in(sre).post("/fleet/linux-prod-1/undrain/")

    assert response.status_code == 302
    runner.refresh_from_db()
    assert not runner.drained
    assert AuditEvent.objects.filter(action="runner.undrain").count() == 1


def test_viewer_cannot_drain(viewer_client: Client) -> None:
    runner = make_runner(name="linux-prod-1")

    response = viewer_client.post("/fleet/linux-prod-1/drain/", {"reason": "x"})

    assert response.status_code == 403
    runner.refresh_from_db()
    assert not runner.drained


def test_drain_form_needs_the_csrf_token(sre: User) -> None:
    runner = make_runner(name="linux-prod-1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(sre)

    refused = client.post("/fleet/linux-prod-1/drain/", {"reason": "x"})
    page = client.get("/fleet/linux-prod-1/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    accepted = client.post(
        "/fleet/linux-prod-1/drain/",
        {"reason": "x", "csrfmiddlewaretoken": token.group(1)},
    )

    assert refused.status_code == 403
    assert accepted.status_code == 302
    runner.refresh_from_db()
    assert runner.drained
