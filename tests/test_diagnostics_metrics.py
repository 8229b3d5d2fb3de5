"""Diagnostics outcomes on /metrics: runs kept by kind and outcome, and when each
outcome last happened, in one query whatever the number of runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from diagnostics.metrics import DiagnosticsCollector
from diagnostics.models import HostRun
from runners.models import Runner
from tests.factories import make_runner
from tests.test_runner_metrics import scrape

pytestmark = pytest.mark.django_db

RUNS = 'controlplane_diagnostics_runs{kind="%s",outcome="%s"}'
LAST = (
    'controlplane_diagnostics_last_finished_timestamp_seconds{kind="%s",outcome="%s"}'
)


def host_run(
    runner: Runner, kind: str, state: str, finished_at: datetime | None
) -> HostRun:
    now = timezone.now()
    return HostRun.objects.create(
        runner=runner,
        kind=kind,
        state=state,
        requested_by="ada",
        deadline=now + timedelta(minutes=10),
        finished_at=finished_at,
    )


def test_runs_are_counted_by_kind_and_outcome(client: Client) -> None:
    now = timezone.now().replace(microsecond=0)
    one, two = make_runner("prod-1"), make_runner("prod-2")
    diagnostics, agent = HostRun.Kind.DIAGNOSTICS, HostRun.Kind.AGENT_INSTALL
    host_run(one, diagnostics, HostRun.State.SUCCEEDED, now - timedelta(hours=2))
    host_run(two, diagnostics, HostRun.State.SUCCEEDED, now - timedelta(hours=1))
    host_run(one, diagnostics, HostRun.State.TIMED_OUT, now - timedelta(minutes=5))
    host_run(one, diagnostics, HostRun.State.RUNNING, None)
    host_run(two, agent, HostRun.State.FAILED, now - timedelta(minutes=3))
    host_run(one, agent, HostRun.State.SUCCEEDED, now - timedelta(minutes=1))

    samples = scrape(client)

    assert samples[RUNS % (diagnostics, "reported")] == 2
    assert samples[RUNS % (diagnostics, "timed_out")] == 1
    assert samples[RUNS % (diagnostics, "in_flight")] == 1
    assert samples[RUNS % (diagnostics, "failed")] == 0
    assert samples[RUNS % (agent, "installed")] == 1
    assert samples[RUNS % (agent, "failed")] == 1
    assert samples[RUNS % (agent, "in_flight")] == 0
    assert (
        samples[LAST % (diagnostics, "reported")]
        == (now - timedelta(hours=1)).timestamp()
    )
    assert (
        samples[LAST % (diagnostics, "timed_out")]
        == (now - timedelta(minutes=5)).timestamp()
    )
    # No run ever failed this way: no time to report.
    assert LAST % (diagnostics, "failed") not in samples
    assert LAST % (diagnostics, "in_flight") not in samples
    assert samples['controlplane_metrics_collector_up{collector="diagnostics"}'] == 1


@pytest.mark.parametrize("runs", [2, 20])
def test_the_collector_costs_one_query(runs: int) -> None:
    runner = make_runner("prod-1")
    for n in range(runs):
        host_run(
            runner,
            HostRun.Kind.DIAGNOSTICS,
            HostRun.State.FAILED,
            timezone.now() - timedelta(minutes=n),
        )
    with CaptureQueriesContext(connection) as queries:
        families = list(DiagnosticsCollector().collect())
    assert len(queries) == 1
    [runs_family, _] = families
    assert sum(s.value for s in runs_family.samples) == runs
