"""A deploy's outcome on its JIRA change ticket: an outbox with retries, like the
notification outbox (``controlplane.notifications``).

1. **Scan.** ``scan()`` reads the deploys' final events (succeeded, failed,
   cancelled) past a high-water mark (a ``NotificationCursor`` row named
   ``change_tickets``), and for each deploy with a JIRA issue key as its ticket
   writes one :class:`TicketUpdate` (the run is unique: a rescan creates nothing).
   Events younger than ``NOTIFY_SCAN_GRACE`` wait, as the notification scanner's
   do. Without ``JIRA_URL`` the mark moves on and nothing is written.
2. **Send.** ``send_due()`` claims due rows one by one with a conditional UPDATE
   (a lease ahead, the attempt counted; 0 rows: another sender has it), then, with
   no transaction open, comments the outcome with a link to the deploy, then
   applies the outcome's transition (``JIRA_TRANSITION_ON_SUCCESS`` /
   ``_ON_FAILURE``) if one is set. Each step is recorded when done, so a retry
   after a failed transition does not comment twice. A failure is retried with
   exponential backoff up to ``JIRA_MAX_ATTEMPTS``, then the row fails and SREs
   are notified. A deploy never waits on any of it.

SREs see it on the deploy's page (the ticket row), in
``controlplane_change_ticket_updates`` and ``..._retrying`` (alerts
``ChangeTicketUpdatesRetrying`` and ``ChangeTicketUpdateFailed``), and in a
notification when one gives up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.urls import reverse
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane.models import NotificationCursor
from controlplane.notifications import absolute, notify
from deploys import jira_conf, jira_gateway
from deploys.change_tickets import JIRA_KEY
from deploys.models import DeployEvent, DeployRun, TicketUpdate

logger = logging.getLogger(__name__)

SOURCE = "change_tickets"
SCAN_BATCH = 1000
SEND_BATCH = 50
RUNBOOK = "change-ticket-updates"
FINAL_KINDS = (
    DeployEvent.Kind.SUCCEEDED,
    DeployEvent.Kind.FAILED,
    DeployEvent.Kind.CANCELLED,
)
OUTCOME_WORDS: dict[str, str] = {
    DeployRun.State.SUCCEEDED: "succeeded",
    DeployRun.State.FAILED: "failed",
    DeployRun.State.CANCELLED: "was cancelled",
}


def transition_for(outcome: str) -> str:
    if outcome == DeployRun.State.SUCCEEDED:
        return jira_conf.transition_on_success()
    if outcome == DeployRun.State.FAILED:
        return jira_conf.transition_on_failure()
    return ""


# Scan -----------------------------------------------------------------------------------


def scan(now: datetime | None = None) -> int:
    """Write the updates for final events past the mark; returns how many."""
    now = now or timezone.now()
    cursor, _ = NotificationCursor.objects.get_or_create(source=SOURCE)
    cutoff = now - timedelta(seconds=settings.NOTIFY_SCAN_GRACE)
    batch = list(
        DeployEvent.objects.filter(pk__gt=cursor.last_id, kind__in=FINAL_KINDS)
        .order_by("pk")
        .values_list("pk", "created_at", "kind", "run_id", "run__change_ticket")[
            :SCAN_BATCH
        ]
    )
    # Stop at the first event inside the grace period (see the module's note).
    ready = []
    for row in batch:
        if row[1] > cutoff:
            break
        ready.append(row)
    if not ready:
        return 0
    rows = [
        TicketUpdate(
            run_id=run_id,
            ticket=ticket,
            outcome=kind,
            transition=transition_for(kind),
            next_attempt_at=now,
            created_at=now,
        )
        for _, _, kind, run_id, ticket in ready
        if jira_conf.enabled() and JIRA_KEY.match(ticket)
    ]
    with transaction.atomic():
        TicketUpdate.objects.bulk_create(rows, ignore_conflicts=True)
        # Monotonic: a slower scanner that read fewer rows never moves it back.
        NotificationCursor.objects.filter(
            source=SOURCE, last_id__lt=ready[-1][0]
        ).update(last_id=ready[-1][0], updated_at=now)
    return len(rows)


# Send -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One claimed update's attempt: sent, or why not."""

    sent: bool
    # JIRA could not answer (down, slow, 5xx, credentials): later rows would too.
    unavailable: bool = False


def comment_body(update: TicketUpdate) -> str:
    """The comment: what happened to the deploy, and a link back to it."""
    run = update.run
    words = OUTCOME_WORDS.get(update.outcome, update.outcome)
    commit = f" ({run.sha[:12]})" if run.sha else ""
    lines = [
        f"Deploy #{run.pk} of {run.ref}{commit} to {run.environment.name} {words}."
    ]
    if update.outcome != DeployRun.State.SUCCEEDED and run.message:
        lines.append(f"Reason: {run.get_reason_display()}: {run.message}")
    finished = f"{run.finished_at:%Y-%m-%d %H:%M} UTC" if run.finished_at else "-"
    lines.append(
        f"Requested by {run.requester_name or 'anonymous'} at "
        f"{run.created_at:%Y-%m-%d %H:%M} UTC; finished at {finished}."
    )
    lines.append(f"Deploy: {absolute(reverse('deploys:run-detail', args=[run.pk]))}")
    return "\n".join(lines)


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return float(
        min(jira_conf.retry_max(), jira_conf.retry_base() * 2 ** (attempts - 1))
    )


def send_due(now: datetime | None = None, *, limit: int = SEND_BATCH) -> int:
    """Send due updates; returns how many this call claimed. While JIRA cannot
    answer, the tick stops at the first such failure (one timeout per tick), and
    no new claim starts once the tick used its time budget."""
    now = now or timezone.now()
    started = time.monotonic()
    budget = jira_conf.timeout() * 4
    due = TicketUpdate.objects.due(now).order_by("next_attempt_at", "pk")
    claimed = 0
    for pk in due.values_list("pk", flat=True)[:limit]:
        if time.monotonic() - started > budget:
            break
        outcome = send(pk, now=now)
        if outcome is None:
            continue
        claimed += 1
        if outcome.unavailable:
            break
    return claimed


def send(pk: int, *, now: datetime | None = None) -> Outcome | None:
    """Claim and send one update; None when it was not due or another sender has it.

    1. Claim: a conditional UPDATE pushes ``next_attempt_at`` a lease ahead and
       counts the attempt.
    2. Comment, then transition, each once, outside any transaction.
    3. Record the outcome: sent, a retry after backoff, or failed (SREs notified).
    """
    now = now or timezone.now()
    lease = now + timedelta(seconds=jira_conf.timeout() * 6 + 30)
    claimed = TicketUpdate.objects.filter(
        pk=pk, state=TicketUpdate.State.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease, attempts=F("attempts") + 1)
    if not claimed:
        return None
    update = TicketUpdate.objects.select_related("run__environment").get(pk=pk)
    if not jira_conf.enabled():
        _failed(update, "JIRA_URL is no longer set", now)
        return Outcome(sent=False)
    try:
        if update.commented_at is None:
            jira_gateway.comment(update.ticket, comment_body(update))
            TicketUpdate.objects.filter(pk=pk).update(commented_at=timezone.now())
        if update.transition and update.transitioned_at is None:
            jira_gateway.transition(update.ticket, update.transition)
            TicketUpdate.objects.filter(pk=pk).update(transitioned_at=timezone.now())
    except jira_gateway.JiraError as exc:
        logger.warning(
            "change ticket %s of deploy %s: attempt %s failed: %s",
            update.ticket,
            update.run_id,
            update.attempts,
            exc.message,
        )
        if update.attempts >= jira_conf.max_attempts():
            _failed(update, exc.message, now)
        else:
            TicketUpdate.objects.filter(pk=pk).update(
                next_attempt_at=now + timedelta(seconds=backoff(update.attempts)),
                last_error=exc.message[:300],
            )
        return Outcome(sent=False, unavailable=exc.unavailable)
    TicketUpdate.objects.filter(pk=pk).update(
        state=TicketUpdate.State.SENT, sent_at=timezone.now(), last_error=""
    )
    return Outcome(sent=True)


def _failed(update: TicketUpdate, error: str, now: datetime) -> None:
    """Give up on ``update`` and tell SREs, in one transaction."""
    run = update.run
    with transaction.atomic():
        TicketUpdate.objects.filter(pk=update.pk).update(
            state=TicketUpdate.State.FAILED, last_error=error[:300]
        )
        notify(
            "change_ticket_failed",
            f"JIRA ticket {update.ticket} was not updated with deploy #{run.pk}'s "
            "outcome",
            f"After {update.attempts} attempt(s): {error}. Comment the outcome on "
            "the ticket by hand.",
            reverse("deploys:run-detail", args=[run.pk]),
            dedupe_key=f"change-ticket-failed:{run.pk}",
            runbook=RUNBOOK,
            now=now,
            deploy=run.pk,
            ticket=update.ticket,
            outcome=update.outcome,
        )


def process(now: datetime | None = None) -> tuple[int, int]:
    """One beat tick: scan new final events, then send; (created, claimed)."""
    created = scan(now)
    # A fresh "now" by default: the rows just created are due from their insert.
    return created, send_due(now)


# Metrics --------------------------------------------------------------------------------


class TicketUpdateCollector:
    """The change-ticket outbox by state, and the pending ones already retrying."""

    name = "change_tickets"

    def collect(self) -> Iterable[Metric]:
        counts = dict(
            TicketUpdate.objects.values_list("state")
            .annotate(n=Count("pk"))
            .order_by("state")
        )
        family = GaugeMetricFamily(
            "controlplane_change_ticket_updates",
            "Deploy outcomes for JIRA change tickets by state (sent, failed, pending).",
            labels=["state"],
        )
        for state in TicketUpdate.State.values:
            family.add_metric([state], counts.get(state, 0))
        retrying = GaugeMetricFamily(
            "controlplane_change_ticket_updates_retrying",
            "Pending change-ticket updates whose last attempt failed.",
            value=TicketUpdate.objects.filter(state=TicketUpdate.State.PENDING)
            .exclude(last_error="")
            .count(),
        )
        return [family, retrying]
