"""Schedule the GitHub runner sync and the exporter probe in the database (editable
in the admin), on the ``health`` queue."""

from __future__ import annotations

from django.apps.registry import Apps
from django.conf import settings
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

SYNC = "Runner registry sync"
PROBE = "Runner exporter probe"


def create_schedules(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    sync_tick, _ = interval_schedule.objects.get_or_create(
        every=settings.RUNNER_SYNC_MIN_INTERVAL, period="seconds"
    )
    probe_tick, _ = interval_schedule.objects.get_or_create(
        every=settings.EXPORTER_PROBE_INTERVAL, period="seconds"
    )
    periodic_task.objects.get_or_create(
        name=SYNC,
        defaults={
            "task": "runners.tasks.sync_runners",
            "interval": sync_tick,
            "queue": "health",
            "expire_seconds": settings.RUNNER_SYNC_MIN_INTERVAL,
            "description": (
                "Keeps the runner registry in step with GitHub's runner list. Runs "
                "often but sweeps only when the interval adapted to the fleet size "
                "has passed, so steady-state use stays within GITHUB_BUDGET_SHARE of "
                "the hourly API limit."
            ),
        },
    )
    periodic_task.objects.get_or_create(
        name=PROBE,
        defaults={
            "task": "runners.tasks.probe_exporters",
            "interval": probe_tick,
            "queue": "health",
            "expire_seconds": settings.EXPORTER_PROBE_INTERVAL,
            "description": (
                "Reads every active runner's Prometheus exporter and judges disk free "
                "and load per CPU against DISK_FREE_MIN_PERCENT and LOAD_PER_CPU_MAX."
            ),
        },
    )


def delete_schedules(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[SYNC, PROBE]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("runners", "0003_runner_sync"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, delete_schedules)]
