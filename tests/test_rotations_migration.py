"""Moving the secret rotation models from the deploys app to the rotations app
keeps every schedule, rotation and link, in both directions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from controlplane.models import AuditEvent
from deploys.models import Environment
from rotations.models import SecretRotation, SecretRotationSchedule

OLD_DEPLOYS = ("deploys", "0012_github_name_validators")
BEFORE: list[tuple[str, str | None]] = [OLD_DEPLOYS, ("rotations", None)]
ROTATED_AT = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection)


def latest() -> list[tuple[str, str | None]]:
    return list(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_schedules_and_rotations_survive_the_move() -> None:
    after = latest()
    content_type = ContentType.objects.get(
        app_label="rotations", model="secretrotationschedule"
    )
    try:
        executor = migrate(BEFORE)
        old = executor.loader.project_state(OLD_DEPLOYS).apps
        # Back in the old layout the models and their content type are the deploys
        # app's again.
        assert ContentType.objects.get(pk=content_type.pk).app_label == "deploys"
        env = old.get_model("deploys", "Environment").objects.create(
            name="production", repository="acme/shop"
        )
        user = old.get_model("auth", "User").objects.create(username="ana")
        schedule = old.get_model("deploys", "SecretRotationSchedule").objects.create(
            name="DEPLOY_KEY",
            scope="environment",
            environment=env,
            interval_days=30,
            owner="platform",
            last_rotated_at=ROTATED_AT,
        )
        schedule.required_by.add(env)
        old.get_model("deploys", "SecretRotation").objects.create(
            schedule=schedule,
            rotated_at=ROTATED_AT,
            source="control_plane",
            actor=user,
            actor_name="ana",
            key_id="key-1",
        )
        AuditEvent.objects.create(
            actor_name="ana",
            action="secret.rotate",
            target_type="deploys.secretrotationschedule",
            target_id=str(schedule.pk),
            outcome="success",
        )

        migrate(after)

        moved = SecretRotationSchedule.objects.get(pk=schedule.pk)
        assert (moved.name, moved.scope, moved.interval_days, moved.owner) == (
            "DEPLOY_KEY",
            "environment",
            30,
            "platform",
        )
        assert moved.environment is not None and moved.environment.pk == env.pk
        assert [e.pk for e in moved.required_by.all()] == [env.pk]
        assert moved.last_rotated_at == ROTATED_AT
        rotation = SecretRotation.objects.get(schedule=moved)
        assert (rotation.actor, rotation.key_id, rotation.source) == (
            User.objects.get(username="ana"),
            "key-1",
            "control_plane",
        )
        production = Environment.objects.get(pk=env.pk)
        assert list(production.secret_schedules.all()) == [moved]
        assert list(production.required_secret_schedules.all()) == [moved]
        # The audit page lists the schedule's history, older rows included.
        assert list(
            AuditEvent.objects.filter(
                target_type="rotations.secretrotationschedule",
                target_id=str(moved.pk),
            ).values_list("action", flat=True)
        ) == ["secret.rotate"]
        # Permissions stay attached to the same content type, now the app's.
        assert ContentType.objects.get_for_model(SecretRotationSchedule).pk == (
            content_type.pk
        )
        assert Permission.objects.filter(
            content_type=content_type, codename="change_secretrotationschedule"
        ).exists()
        assert not ContentType.objects.filter(
            app_label="deploys", model__startswith="secretrotation"
        ).exists()
    finally:
        migrate(after)
