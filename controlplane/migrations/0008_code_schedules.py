"""Record what the code last wrote to each periodic task, so that an admin's edit
in the admin is told apart from a value the code may update."""

from __future__ import annotations

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("controlplane", "0007_leases"),
    ]

    operations = [
        migrations.CreateModel(
            name="CodeSchedule",
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
                ("name", models.CharField(max_length=200)),
                ("values", models.JSONField(default=dict)),
                ("synced_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "ordering": ["name"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("name",), name="codeschedule_name_uniq"
                    )
                ],
            },
        ),
    ]
