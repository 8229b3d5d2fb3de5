from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0029_deploy_finished_index"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="environment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("canary_policy__in", ["required", "advisory", "ignored"])
                ),
                name="environment_canary_policy_valid",
            ),
        ),
    ]
