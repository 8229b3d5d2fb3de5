"""Schedule the daily audit of secret rotation schedules against GitHub."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

NAME = "Audit secrets against GitHub"


def create_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    crontab_schedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    daily, _ = crontab_schedule.objects.get_or_create(
        minute="17", hour="6", day_of_week="*", day_of_month="*", month_of_year="*"
    )
    apps.get_model("django_celery_beat", "PeriodicTask").objects.get_or_create(
        name=NAME,
        defaults={
            "task": "deploys.tasks.audit_secrets",
            "crontab": daily,
            "queue": "health",
            "description": (
                "Lists secrets in GitHub for every rotation schedule: records "
                "rotations made outside the control plane, flags missing secrets."
            ),
        },
    )


def delete_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=NAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0006_secret_rotation"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
