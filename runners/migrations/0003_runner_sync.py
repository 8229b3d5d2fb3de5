import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runners", "0002_health_schedules"),
    ]

    operations = [
        migrations.CreateModel(
            name="RunnerSync",
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
                ("scope", models.CharField(max_length=300, unique=True)),
                ("pages", models.JSONField(blank=True, default=list)),
                ("total_count", models.IntegerField(blank=True, null=True)),
                (
                    "next_sync_at",
                    models.DateTimeField(default=django.utils.timezone.now),
                ),
                ("interval_seconds", models.FloatField(default=0.0)),
                ("last_sync_at", models.DateTimeField(blank=True, null=True)),
                ("last_requests", models.PositiveIntegerField(default=0)),
                ("last_not_modified", models.PositiveIntegerField(default=0)),
            ],
            options={
                "ordering": ["scope", "pk"],
            },
        ),
    ]
