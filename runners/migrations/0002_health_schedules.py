"""Schedule the health sweep and history retention in the database (editable in the
admin), on the ``health`` queue."""

from __future__ import annotations

from django.apps.registry import Apps
from django.conf import settings
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

SWEEP = "Runner health sweep"
RETENTION = "Runner history retention"


def create_schedules(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    every_sweep, _ = interval_schedule.objects.get_or_create(
        every=settings.HEALTH_SWEEP_INTERVAL, period="seconds"
    )
    hourly, _ = interval_schedule.objects.get_or_create(every=1, period="hours")
    periodic_task.objects.get_or_create(
        name=SWEEP,
        defaults={
            "task": "runners.tasks.sweep_health",
            "interval": every_sweep,
            "queue": "health",
            # A sweep queued behind a backlog is dropped: the next one evaluates the
            # same signals, and two back to back would count one observation twice.
            "expire_seconds": settings.HEALTH_SWEEP_INTERVAL,
            "description": (
                "Evaluates every runner's health from its heartbeat, GitHub status "
                "and exporter readings; a dead host turns unhealthy within "
                "HEARTBEAT_STALE_AFTER + HEALTH_FALL_AFTER sweeps."
            ),
        },
    )
    periodic_task.objects.get_or_create(
        name=RETENTION,
        defaults={
            "task": "runners.tasks.prune_health_history",
            "interval": hourly,
            "queue": "health",
            "expire_seconds": 1800,
            "description": (
                "Deletes runner health samples and events older than "
                "HEALTH_RETENTION_DAYS, in bounded batches."
            ),
        },
    )


def delete_schedules(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[SWEEP, RETENTION]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("runners", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, delete_schedules)]
