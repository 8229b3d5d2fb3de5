"""Idempotency keys move from deploy runs to records of their own, reserved before
the run is created and pruned after a retention; an hourly task prunes them."""

from __future__ import annotations

import django.db.models.deletion
from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

NAME = "Prune idempotency keys"


def copy_keys(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Keys already used keep replaying their run (their first response was not
    stored: a replay answers with the run as it is now)."""
    deploy_run = apps.get_model("deploys", "DeployRun")
    record = apps.get_model("deploys", "IdempotencyRecord")
    runs = deploy_run.objects.exclude(idempotency_key="").values_list(
        "pk", "caller", "idempotency_key", "request_fingerprint", "created_at"
    )
    record.objects.bulk_create(
        record(
            run_id=pk,
            caller=caller,
            key=key,
            fingerprint=fingerprint,
            reserved_at=created_at,
        )
        for pk, caller, key, fingerprint, created_at in runs.iterator()
    )


def copy_keys_back(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    deploy_run = apps.get_model("deploys", "DeployRun")
    records = apps.get_model("deploys", "IdempotencyRecord").objects.filter(
        run__isnull=False
    )
    for record in records.iterator():
        deploy_run.objects.filter(pk=record.run_id).update(
            caller=record.caller,
            idempotency_key=record.key,
            request_fingerprint=record.fingerprint,
        )


def create_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    hourly, _ = interval_schedule.objects.get_or_create(every=1, period="hours")
    apps.get_model("django_celery_beat", "PeriodicTask").objects.get_or_create(
        name=NAME,
        defaults={
            "task": "deploys.tasks.prune_idempotency_keys",
            "interval": hourly,
            "queue": "deploys",
            "description": (
                "Deletes Idempotency-Key records older than "
                "IDEMPOTENCY_KEY_RETENTION_HOURS (default 7 days), in bounded batches."
            ),
        },
    )


def delete_schedule(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=NAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0007_secret_audit_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="IdempotencyRecord",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("caller", models.CharField(max_length=150)),
                ("key", models.CharField(max_length=200)),
                ("fingerprint", models.CharField(max_length=64)),
                ("reserved_at", models.DateTimeField()),
                ("response", models.JSONField(blank=True, null=True)),
                (
                    "run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="deploys.deployrun",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["reserved_at"], name="idempotency_reserved_idx"
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("caller", "key"),
                        name="idempotency_record_caller_key_uniq",
                    )
                ],
            },
        ),
        migrations.RunPython(copy_keys, copy_keys_back),
        migrations.RemoveConstraint(
            model_name="deployrun", name="deploy_idempotency_key_uniq"
        ),
        migrations.RemoveField(model_name="deployrun", name="caller"),
        migrations.RemoveField(model_name="deployrun", name="idempotency_key"),
        migrations.RemoveField(model_name="deployrun", name="request_fingerprint"),
        migrations.RunPython(create_schedule, delete_schedule),
    ]
