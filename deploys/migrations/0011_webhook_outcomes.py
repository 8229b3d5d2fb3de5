"""Webhook deliveries get an outcome (matched, unmatched, ignored, failed) and a link
to the deploy they concerned; the webhook's delivery log is checked every few
minutes for failed deliveries to redeliver, and stored deliveries are pruned."""

from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

RECOVERY = "Redeliver missed webhooks"
RETENTION = "Prune webhook deliveries"


def set_outcomes(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Deliveries processed before outcomes existed: failed if they have an error,
    else matched (the old code applied every delivery it processed)."""
    delivery = apps.get_model("deploys", "WebhookDelivery")
    processed = delivery.objects.filter(processed_at__isnull=False)
    processed.exclude(error="").update(outcome="failed")
    processed.filter(error="").update(outcome="matched")


def create_schedules(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    five_minutes, _ = interval_schedule.objects.get_or_create(every=5, period="minutes")
    hourly, _ = interval_schedule.objects.get_or_create(every=1, period="hours")
    periodic_task.objects.get_or_create(
        name=RECOVERY,
        defaults={
            "task": "deploys.tasks.recover_webhooks",
            "interval": five_minutes,
            "queue": "deploys",
            "description": (
                "Lists the GitHub webhook's recent deliveries and asks GitHub to "
                "redeliver each failed one the control plane never received "
                "(GitHub never redelivers by itself)."
            ),
        },
    )
    periodic_task.objects.get_or_create(
        name=RETENTION,
        defaults={
            "task": "deploys.tasks.prune_webhook_deliveries",
            "interval": hourly,
            "queue": "deploys",
            "description": (
                "Deletes webhook deliveries older than WEBHOOK_RETENTION_DAYS, in "
                "bounded batches."
            ),
        },
    )


def delete_schedules(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[RECOVERY, RETENTION]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0010_freeze_window_shape_not_null"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="WebhookHook",
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
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("repository", "Repository"),
                            ("organization", "Organization"),
                        ],
                        max_length=12,
                    ),
                ),
                ("owner", models.CharField(max_length=200)),
                ("hook_id", models.BigIntegerField()),
                ("checked_until", models.DateTimeField(blank=True, null=True)),
                ("resume_cursor", models.CharField(blank=True, max_length=200)),
                ("resume_below_id", models.BigIntegerField(blank=True, null=True)),
                ("scan_top_id", models.BigIntegerField(blank=True, null=True)),
                ("scan_top", models.DateTimeField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "ordering": ["scope", "owner", "pk"],
            },
        ),
        migrations.CreateModel(
            name="WebhookRedelivery",
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
                ("guid", models.CharField(max_length=64)),
                ("event", models.CharField(blank=True, max_length=50)),
                ("github_delivery_id", models.BigIntegerField()),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                (
                    "first_requested_at",
                    models.DateTimeField(default=django.utils.timezone.now),
                ),
                (
                    "last_requested_at",
                    models.DateTimeField(default=django.utils.timezone.now),
                ),
                ("error", models.CharField(blank=True, max_length=500)),
            ],
            options={
                "ordering": ["-last_requested_at", "-pk"],
            },
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="deploy_run",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="webhook_deliveries",
                to="deploys.deployrun",
            ),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="github_run_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("matched", "Matched"),
                    ("unmatched", "Unmatched"),
                    ("ignored", "Ignored"),
                    ("failed", "Failed"),
                ],
                default="pending",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="reason",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="repository",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="payload",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(fields=["received_at"], name="webhook_received_idx"),
        ),
        migrations.AddConstraint(
            model_name="webhookhook",
            constraint=models.UniqueConstraint(
                fields=("scope", "owner", "hook_id"), name="webhook_hook_uniq"
            ),
        ),
        migrations.AddConstraint(
            model_name="webhookredelivery",
            constraint=models.UniqueConstraint(
                fields=("guid",), name="webhook_redelivery_guid_uniq"
            ),
        ),
        migrations.RunPython(set_outcomes, migrations.RunPython.noop),
        migrations.RunPython(create_schedules, delete_schedules),
    ]
