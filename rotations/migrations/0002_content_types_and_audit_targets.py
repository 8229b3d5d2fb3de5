"""Follow the models' move from the deploys app in the rows that name their app.

Content types: their permissions and admin log entries stay attached. Audit rows:
``target_type`` is the model's ``app_label.model``, and the audit page lists one
object's history by it, so older rows must carry the new label to stay in it.
"""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

MODELS = ("secretrotationschedule", "secretrotation")


def _relabel(apps: Apps, old: str, new: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    audit_event = apps.get_model("controlplane", "AuditEvent")
    for model in MODELS:
        # A label already taken (a content type made after the move) wins.
        if not content_type.objects.filter(app_label=new, model=model).exists():
            content_type.objects.filter(app_label=old, model=model).update(
                app_label=new
            )
        audit_event.objects.filter(target_type=f"{old}.{model}").update(
            target_type=f"{new}.{model}"
        )


def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _relabel(apps, "deploys", "rotations")


def backwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _relabel(apps, "rotations", "deploys")


class Migration(migrations.Migration):
    dependencies = [
        ("rotations", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("controlplane", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
