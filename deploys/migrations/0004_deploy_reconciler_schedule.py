"""Schedule the reconciler that advances deploys whose next look is due."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

NAME = "Advance due deploys"


def create_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    every_two_seconds, _ = interval_schedule.objects.get_or_create(
        every=2, period="seconds"
    )
    apps.get_model("django_celery_beat", "PeriodicTask").objects.get_or_create(
        name=NAME,
        defaults={
            "task": "deploys.tasks.reconcile_deploys",
            "interval": every_two_seconds,
            "queue": "deploys",
            "expire_seconds": 2,
            "description": (
                "Enqueues an advance for every deploy whose next_check_at has passed "
                "(pickup timeouts, polling, gate retries, lost messages)."
            ),
        },
    )


def delete_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=NAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0003_deploy_runs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
