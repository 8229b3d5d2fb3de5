"""The secret rotation models move to the rotations app (its 0001 takes them over).

State only: the tables stay where they are, under their old names, which the
moved models name in ``db_table``, so no data moves.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0012_github_name_validators"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="secretrotationschedule",
                    name="environment",
                ),
                migrations.RemoveField(
                    model_name="secretrotationschedule",
                    name="required_by",
                ),
                migrations.DeleteModel(name="SecretRotation"),
                migrations.DeleteModel(name="SecretRotationSchedule"),
            ],
            database_operations=[],
        ),
    ]
