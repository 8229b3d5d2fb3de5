"""JIRA change tickets: the environment's allowed statuses, and the outbox of
outcome comments on tickets (``deploys.ticket_outbox`` sends them).

Imports no other model module: ``Environment`` takes the mixin as a base, and the
outbox row names ``DeployRun`` by its label.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


def parse_statuses(value: str) -> list[str]:
    """``"Approved, In Progress"`` as ``["Approved", "In Progress"]``."""
    return [item.strip() for item in value.split(",") if item.strip()]


def validate_statuses(value: str) -> None:
    if value.strip() and not parse_statuses(value):
        raise ValidationError("status names separated by commas")
    if any(len(name) > 60 for name in parse_statuses(value)):
        raise ValidationError("a status name has at most 60 characters")


class ChangeTicketFields(models.Model):
    """What an environment asks of a deploy's JIRA ticket (with JIRA_URL set)."""

    # Statuses (comma-separated, case-insensitive) the ticket must be in for a
    # deploy here; blank: the JIRA_ALLOWED_STATUSES setting.
    jira_allowed_statuses = models.CharField(
        max_length=500, blank=True, validators=[validate_statuses]
    )

    class Meta:
        abstract = True


class TicketUpdateQuerySet(models.QuerySet["TicketUpdate"]):
    def due(self, now: Any) -> TicketUpdateQuerySet:
        """Pending updates whose next attempt may start now."""
        return self.filter(state=TicketUpdate.State.PENDING, next_attempt_at__lte=now)


class TicketUpdate(models.Model):
    """A finished deploy's outcome, to comment on its JIRA change ticket (then the
    ticket's transition, if one is configured for the outcome): an outbox row."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    FINAL_STATES = (State.SENT, State.FAILED)

    # One update per deploy: a rescan of its final event creates nothing new.
    run = models.OneToOneField(
        "deploys.DeployRun", on_delete=models.CASCADE, related_name="ticket_update"
    )
    ticket = models.CharField(max_length=100)
    # The deploy's final state: succeeded, failed or cancelled.
    outcome = models.CharField(max_length=12)
    # The transition to apply after the comment ("" for none).
    transition = models.CharField(max_length=100, blank=True)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # A claim pushes it one lease ahead: a sender killed mid-call leaves the row
    # due again, never lost.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Each step once: a retry after a failed transition does not comment again.
    commented_at = models.DateTimeField(null=True, blank=True)
    transitioned_at = models.DateTimeField(null=True, blank=True)
    # What went wrong last, in words (a status or a kind of failure, never a header).
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = TicketUpdateQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "sent", "failed"]),
                name="ticket_update_state_valid",
            ),
        ]
        indexes = [
            # The sender's scan: TicketUpdate.objects.due(now).
            models.Index(
                fields=["next_attempt_at"],
                name="ticket_update_due_idx",
                condition=Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticket}: deploy {self.run_id} {self.outcome} ({self.state})"

    @property
    def retrying(self) -> bool:
        """Pending after at least one failed attempt."""
        return self.state == self.State.PENDING and bool(self.last_error)
