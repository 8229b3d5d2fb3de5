"""Schedule the sweep that processes webhook deliveries whose queue message was lost."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

NAME = "Process pending webhook deliveries"


def create_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    every_minute, _ = interval_schedule.objects.get_or_create(
        every=60, period="seconds"
    )
    apps.get_model("django_celery_beat", "PeriodicTask").objects.get_or_create(
        name=NAME,
        defaults={
            "task": "deploys.tasks.process_pending_webhooks",
            "interval": every_minute,
            "queue": "deploys",
            "expire_seconds": 60,
            "description": (
                "Applies stored GitHub webhook deliveries still unprocessed 30 s after "
                "they arrived (a lost message, a killed worker)."
            ),
        },
    )


def delete_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=NAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
