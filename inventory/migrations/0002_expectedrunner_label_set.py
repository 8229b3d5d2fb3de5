"""Each expected runner's label set (``runners.label_sets``): what the drift counts
compare in SQL, filled in for the inventory in force."""

from typing import Any

from django.db import migrations, models

from runners.label_sets import key_of


def fill(apps: Any, schema_editor: Any) -> None:
    expected = apps.get_model("inventory", "ExpectedRunner")
    rows = list(expected.objects.only("pk", "name", "labels"))
    for row in rows:
        row.label_key, row.label_defaults = key_of(row.name, row.labels)
    expected.objects.bulk_update(rows, ["label_key", "label_defaults"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0001_intended_inventory"),
    ]

    operations = [
        migrations.AddField(
            model_name="expectedrunner",
            name="label_defaults",
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="expectedrunner",
            name="label_key",
            field=models.TextField(default="[]", editable=False),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
