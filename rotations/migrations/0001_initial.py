"""The secret rotation models, taken over from the deploys app (its 0013 lets go).

State only: the tables the deploys app created keep their names (``db_table``),
so no data moves.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import controlplane.names


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("deploys", "0013_move_secret_rotation_to_rotations"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SecretRotationSchedule",
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
                            "name",
                            models.CharField(
                                max_length=100,
                                validators=[
                                    controlplane.names.NameValidator("secret name")
                                ],
                            ),
                        ),
                        (
                            "scope",
                            models.CharField(
                                choices=[
                                    ("repository", "Repository"),
                                    ("environment", "Environment"),
                                    ("organization", "Organization"),
                                ],
                                default="repository",
                                max_length=20,
                            ),
                        ),
                        (
                            "repository",
                            models.CharField(
                                blank=True,
                                max_length=200,
                                validators=[
                                    controlplane.names.NameValidator("repository")
                                ],
                            ),
                        ),
                        ("interval_days", models.PositiveIntegerField(default=90)),
                        ("warning_days", models.PositiveIntegerField(default=14)),
                        ("owner", models.CharField(blank=True, max_length=200)),
                        ("notes", models.TextField(blank=True)),
                        (
                            "last_rotated_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        ("next_due", models.DateTimeField(blank=True, null=True)),
                        ("warn_at", models.DateTimeField(blank=True, null=True)),
                        ("present", models.BooleanField(blank=True, null=True)),
                        (
                            "github_updated_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "last_checked_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "last_check_error",
                            models.CharField(blank=True, max_length=500),
                        ),
                        (
                            "created_at",
                            models.DateTimeField(default=django.utils.timezone.now),
                        ),
                        (
                            "environment",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="secret_schedules",
                                to="deploys.environment",
                            ),
                        ),
                        (
                            "required_by",
                            models.ManyToManyField(
                                blank=True,
                                related_name="required_secret_schedules",
                                to="deploys.environment",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "deploys_secretrotationschedule",
                        "ordering": ["name", "pk"],
                    },
                ),
                migrations.CreateModel(
                    name="SecretRotation",
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
                            "rotated_at",
                            models.DateTimeField(default=django.utils.timezone.now),
                        ),
                        (
                            "source",
                            models.CharField(
                                choices=[
                                    ("control_plane", "rotated here"),
                                    ("external", "changed outside the control plane"),
                                ],
                                max_length=20,
                            ),
                        ),
                        ("actor_name", models.CharField(blank=True, max_length=150)),
                        ("key_id", models.CharField(blank=True, max_length=100)),
                        (
                            "github_updated_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "schedule",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="rotations",
                                to="rotations.secretrotationschedule",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "deploys_secretrotation",
                        "ordering": ["-rotated_at", "-pk"],
                    },
                ),
                migrations.AddIndex(
                    model_name="secretrotationschedule",
                    index=models.Index(
                        fields=["next_due"], name="secret_schedule_due_idx"
                    ),
                ),
                migrations.AddConstraint(
                    model_name="secretrotationschedule",
                    constraint=models.UniqueConstraint(
                        fields=("name", "scope", "repository", "environment"),
                        name="secret_schedule_target_uniq",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="secretrotationschedule",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("environment__isnull", True)),
                        fields=("name", "scope", "repository"),
                        name="secret_schedule_scope_uniq",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="secretrotationschedule",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                ("environment__isnull", False), ("scope", "environment")
                            ),
                            models.Q(("scope", "environment"), _negated=True),
                            _connector="OR",
                        ),
                        name="secret_schedule_environment_scope",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="secretrotationschedule",
                    constraint=models.CheckConstraint(
                        condition=models.Q(("interval_days__gte", 1)),
                        name="secret_schedule_interval_min",
                    ),
                ),
                migrations.AddIndex(
                    model_name="secretrotation",
                    index=models.Index(
                        fields=["schedule", "-rotated_at"],
                        name="secret_rotation_recent_idx",
                    ),
                ),
            ],
            database_operations=[],
        ),
    ]
