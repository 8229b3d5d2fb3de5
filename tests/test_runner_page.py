"""The runner page: the health strip zooms and says what it observed, facts read
with units, repeated events collapse, and a state the live signals contradict says
it is being re-evaluated instead of sitting beside the contradicting fact."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from runners.models import Reason, RunnerEvent, State
from tests.factories import make_runner

pytestmark = pytest.mark.django_db


def test_the_strip_zooms_and_says_what_it_observed(viewer_client: Client) -> None:
    now = timezone.now()
    runner = make_runner(
        "linux-prod-1", state=State.HEALTHY, created=now - timedelta(minutes=20)
    )
    RunnerEvent.objects.create(
        runner=runner,
        kind=RunnerEvent.Kind.STATE_CHANGE,
        from_state=State.UNKNOWN,
        to_state=State.HEALTHY,
        created_at=now - timedelta(minutes=19, seconds=12),
    )

    hour = viewer_client.get("/fleet/linux-prod-1/?window=1h")
    week = viewer_client.get("/fleet/linux-prod-1/?window=7d")
    bogus = viewer_client.get("/fleet/linux-prod-1/?window=1y")

    html = hour.content.decode()
    assert hour.context["window"] == "1h"
    assert hour.context["timeline"].start <= now - timedelta(minutes=59)
    assert week.context["timeline"].start <= now - timedelta(days=6, hours=23)
    assert bogus.context["window"] == "24h"
    # 48 s unknown, then healthy: 96 % of the 20 minutes the runner existed.
    assert (
        'Healthy <strong id="uptime-percent">96.0 %</strong> of the 20 min observed'
        in html
    )
    # The zoom works without JavaScript: plain links, the current one marked.
    assert 'href="?window=7d#health"' in html
    assert 'href="?window=1h#health" aria-current="true"' in html


def test_facts_have_units_and_readable_labels(viewer_client: Client) -> None:
    make_runner(
        "linux-prod-1",
        facts={
            "runner_version": "2.321.0",
            "disk_free_bytes": 60 * 10**9,
            "disk_total_bytes": 100 * 10**9,
            "load1": 0.52,
            "cpus": 4,
            "uptime_seconds": 90_000,
        },
        exporter_detail={"disk_free_percent": 61.5, "latency_ms": 12},
    )

    html = viewer_client.get("/fleet/linux-prod-1/").content.decode()

    assert "<dt>Disk free</dt><dd>60.0 GB of 100 GB (60 %)</dd>" in html
    assert "<dt>Load (1 min)</dt><dd>0.52 on 4 CPUs</dd>" in html
    assert "<dt>Uptime</dt><dd>1 d 1 h</dd>" in html
    assert "<dt>Runner version</dt><dd>2.321.0</dd>" in html
    assert "61.5 %" in html and "12 ms" in html
    assert "disk_free_bytes" not in html


def test_repeated_token_rotations_collapse_to_one_line(viewer_client: Client) -> None:
    runner = make_runner("linux-prod-1")
    for _ in range(30):
        runner.issue_heartbeat_token("demo")
    runner.drain("sam-sre", "kernel upgrade")

    response = viewer_client.get("/fleet/linux-prod-1/")

    lines = response.context["events"]
    assert [(line.event.kind, line.repeats) for line in lines] == [
        ("drained", 1),
        ("token_rotated", 30),
    ]
    assert "&times;30 since" in response.content.decode()


def test_a_fresh_heartbeat_beside_a_stale_verdict_says_re_evaluating(
    viewer_client: Client,
) -> None:
    now = timezone.now()
    # After a restart: heartbeats arrive again, the sweep has not recovered the
    # state yet (hysteresis).
    make_runner(
        "linux-prod-1",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        last_heartbeat_at=now - timedelta(seconds=2),
        heartbeat_deadline=now + timedelta(seconds=28),
    )

    detail = viewer_client.get("/fleet/linux-prod-1/").content.decode()
    fleet = viewer_client.get("/fleet/").content.decode()

    assert 'id="reevaluating"' in detail
    assert "heartbeats resumed" in detail
    assert ">re-evaluating<" in fleet


def test_a_consistent_state_is_not_re_evaluating(viewer_client: Client) -> None:
    now = timezone.now()
    make_runner(
        "linux-prod-1",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        last_heartbeat_at=now - timedelta(seconds=60),
        heartbeat_deadline=now - timedelta(seconds=30),
    )

    detail = viewer_client.get("/fleet/linux-prod-1/").content.decode()

    assert 'id="reevaluating"' not in detail
