"""The rotations app's periodic tasks (``controlplane.schedules``)."""

from __future__ import annotations

from controlplane.schedules import Schedule

SCHEDULES = (
    Schedule(
        name="Audit secrets against GitHub",
        # The task keeps the name it had in the deploys app (rotations/tasks.py).
        task="deploys.tasks.audit_secrets",
        crontab="17 6 * * *",
        queue="health",
        description=(
            "Lists secrets in GitHub for every rotation schedule: records "
            "rotations made outside the control plane, flags missing secrets."
        ),
    ),
)
