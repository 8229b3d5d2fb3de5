"""Schedule the beat liveness tick in the database, where admins can edit it."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

TASK_NAME = "Beat liveness tick"


def create_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    every_15s, _ = interval_schedule.objects.get_or_create(every=15, period="seconds")
    periodic_task.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "controlplane.tasks.beat_tick",
            "interval": every_15s,
            "queue": "health",
            # A tick stuck behind a backlog is dropped: running it late would claim
            # the worker is keeping up when it is not.
            "expire_seconds": 60,
            "description": (
                "Proves Celery beat and a health worker both run: each run records "
                "the 'beat' task status, which the self-monitoring alert watches."
            ),
        },
    )


def delete_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=TASK_NAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("controlplane", "0002_role_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
