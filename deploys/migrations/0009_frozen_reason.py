"""A deploy that reaches the gate while its environment is frozen fails with the
reason ``frozen``."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deploys", "0008_idempotency_records"),
    ]

    operations = [
        migrations.AlterField(
            model_name="deployrun",
            name="reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "none"),
                    ("deploy_failed", "a deploy step failed"),
                    ("no_healthy_runner", "no healthy runner"),
                    ("missing_secrets", "required secrets missing"),
                    ("max_attempts", "every attempt failed over"),
                    ("dispatch_rejected", "GitHub refused the dispatch"),
                    ("wrong_runner", "the job ran on another runner"),
                    ("cancelled", "cancelled by a person"),
                    ("frozen", "the environment froze before the deploy started"),
                ],
                default="",
                max_length=30,
            ),
        ),
    ]
