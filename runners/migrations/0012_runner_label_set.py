"""Each runner's label set (``runners.label_sets``): what the inventory's drift
counts compare in SQL, filled in for the runners already registered."""

from typing import Any

from django.db import migrations, models

from runners.label_sets import key_of


def fill(apps: Any, schema_editor: Any) -> None:
    runner = apps.get_model("runners", "Runner")
    rows = list(runner.objects.only("pk", "name", "labels"))
    for row in rows:
        row.label_key, row.label_defaults = key_of(row.name, row.labels)
    runner.objects.bulk_update(rows, ["label_key", "label_defaults"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("runners", "0011_runner_canary"),
    ]

    operations = [
        migrations.AddField(
            model_name="runner",
            name="label_defaults",
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="runner",
            name="label_key",
            field=models.TextField(default="[]", editable=False),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
