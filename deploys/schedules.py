"""The deploy app's periodic tasks (``controlplane.schedules``)."""

from __future__ import annotations

from controlplane.schedules import Schedule

SCHEDULES = (
    Schedule(
        name="Process pending webhook deliveries",
        task="deploys.tasks.process_pending_webhooks",
        every=60,
        queue="deploys",
        expire_seconds=60,
        description=(
            "Applies stored GitHub webhook deliveries still unprocessed 30 s after "
            "they arrived (a lost message, a killed worker)."
        ),
    ),
    Schedule(
        name="Advance due deploys",
        task="deploys.tasks.reconcile_deploys",
        every=2,
        queue="deploys",
        expire_seconds=2,
        description=(
            "Enqueues an advance for every deploy whose next_check_at has passed "
            "(pickup timeouts, polling, gate retries, lost messages)."
        ),
    ),
    Schedule(
        name="Prune idempotency keys",
        task="deploys.tasks.prune_idempotency_keys",
        every=1,
        period="hours",
        queue="deploys",
        description=(
            "Deletes Idempotency-Key records older than "
            "IDEMPOTENCY_KEY_RETENTION_HOURS (default 7 days), in bounded batches."
        ),
    ),
    Schedule(
        name="Redeliver missed webhooks",
        task="deploys.tasks.recover_webhooks",
        every=5,
        period="minutes",
        queue="deploys",
        description=(
            "Lists the GitHub webhook's recent deliveries and asks GitHub to "
            "redeliver each failed one the control plane never received "
            "(GitHub never redelivers by itself)."
        ),
    ),
    Schedule(
        name="Prune webhook deliveries",
        task="deploys.tasks.prune_webhook_deliveries",
        every=1,
        period="hours",
        queue="deploys",
        description=(
            "Deletes webhook deliveries older than WEBHOOK_RETENTION_DAYS, in "
            "bounded batches."
        ),
    ),
    Schedule(
        name="Update change tickets",
        task="deploys.tasks.update_change_tickets",
        every=10,
        # JIRA calls wait up to JIRA_TIMEOUT: never on the deploys queue. The outbox
        # keeps the work, so a dropped tick loses nothing.
        queue="health",
        expire_seconds=30,
        description=(
            "Comments each finished deploy's outcome on its JIRA change ticket "
            "(and applies JIRA_TRANSITION_ON_SUCCESS / _ON_FAILURE), retrying "
            "with backoff; nothing happens without JIRA_URL."
        ),
    ),
)
