"""Let PostgreSQL apply heartbeats as HOT updates: no index on any column a heartbeat
writes, no second (LIKE pattern) index on the token digest, and free space left in
each page of the runner table for the new row versions."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def leave_room_for_updates(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # A HOT update needs room on the row's own page; 80 % full leaves it.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE runners_runner SET (fillfactor = 80)")


def pack_pages(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE runners_runner RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("runners", "0004_sync_probe_schedules"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="runner",
            name="runner_hb_deadline_idx",
        ),
        migrations.AlterField(
            model_name="runner",
            name="heartbeat_token_digest",
            field=models.CharField(
                blank=True, editable=False, max_length=64, null=True
            ),
        ),
        migrations.AddConstraint(
            model_name="runner",
            constraint=models.UniqueConstraint(
                fields=("heartbeat_token_digest",), name="runner_token_digest_unique"
            ),
        ),
        migrations.RunPython(leave_room_for_updates, pack_pages),
    ]
