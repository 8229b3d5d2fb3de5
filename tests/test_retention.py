"""History retention: old samples and events go, in bounded batches; recent stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from controlplane.models import TaskStatus
from runners import health
from runners.models import HealthSample, Runner, RunnerEvent
from runners.tasks import prune_health_history

pytestmark = pytest.mark.django_db


def make_history(count: int, age: timedelta) -> Runner:
    runner, _ = Runner.objects.get_or_create(name="linux-prod-1")
    when = timezone.now() - age
    HealthSample.objects.bulk_create(
        HealthSample(runner=runner, source="heartbeat", ok=True, observed_at=when)
        for _ in range(count)
    )
    RunnerEvent.objects.bulk_create(
        RunnerEvent(runner=runner, kind="state_change", created_at=when)
        for _ in range(count)
    )
    return runner


def test_history_older_than_retention_is_deleted() -> None:
    make_history(7, timedelta(days=15))
    make_history(3, timedelta(days=13))
    deleted = health.prune_history()
    assert deleted == 14
    assert HealthSample.objects.count() == 3
    assert RunnerEvent.objects.count() == 3
    cutoff = timezone.now() - timedelta(days=14)
    assert not HealthSample.objects.filter(observed_at__lt=cutoff).exists()


def test_deletes_in_batches_and_stops_at_the_cap(
    django_assert_max_num_queries: Any,
) -> None:
    make_history(10, timedelta(days=30))
    # 2 batches of 3 rows per table: one SELECT and one DELETE each.
    with django_assert_max_num_queries(8):
        deleted = health.prune_history(batch=3, max_batches=2)
    assert deleted == 12
    assert HealthSample.objects.count() == 4
    assert health.prune_history(batch=3, max_batches=10) == 8
    assert not HealthSample.objects.exists()
    assert not RunnerEvent.objects.exists()


def test_retention_days_come_from_settings(settings: Any) -> None:
    settings.HEALTH_RETENTION_DAYS = 2
    make_history(2, timedelta(days=3))
    assert health.prune_history() == 4


def test_prune_task_records_its_status() -> None:
    make_history(1, timedelta(days=20))
    prune_health_history()
    assert not HealthSample.objects.exists()
    assert TaskStatus.objects.get(name="health_retention").last_success_at
