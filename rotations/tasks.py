"""Secret rotation work for beat."""

from __future__ import annotations

from celery import shared_task

from controlplane.tasks import tracked
from rotations import domain


# The name it had in the deploys app: beat's PeriodicTask row (data migration
# deploys 0007) and messages already queued refer to it, and the deploys.tasks.*
# route sends a manual run to the same queue as before.
@shared_task(name="deploys.tasks.audit_secrets")
def audit_secrets() -> None:
    """Beat, daily: check every secret rotation schedule against GitHub."""
    with tracked("secrets_audit"):
        domain.audit_schedules()
