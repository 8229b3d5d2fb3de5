"""Schedule the notification outbox's scan and delivery in the database."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

TASK_NAME = "Deliver notifications"


def create_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5s, _ = interval_schedule.objects.get_or_create(every=5, period="seconds")
    periodic_task.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "controlplane.tasks.deliver_notifications",
            "interval": every_5s,
            "queue": "health",
            # The outbox keeps the work: a tick dropped behind a backlog loses
            # nothing, the next one picks the same rows up.
            "expire_seconds": 30,
            "description": (
                "Turns new deploy and runner events into notifications and sends "
                "due ones to NOTIFY_WEBHOOK_URLS / NOTIFY_SLACK_WEBHOOK_URLS, "
                "retrying with backoff."
            ),
        },
    )


def delete_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=TASK_NAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("controlplane", "0004_notifications"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
