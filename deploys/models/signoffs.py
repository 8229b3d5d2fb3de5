"""Approvals and rejections of deploys given in the control plane (sign-off).

Not GitHub's required reviewers: those are ``deploys.engine.approval``."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from deploys.models.runs import DeployRun


class SignOff(models.Model):
    """One SRE's decision on one deploy in the control plane: approved or rejected."""

    class Decision(models.TextChoices):
        APPROVED = "approved"
        REJECTED = "rejected"

    run = models.ForeignKey(
        DeployRun, on_delete=models.CASCADE, related_name="signoffs"
    )
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    approver_name = models.CharField(max_length=150)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reason = models.CharField(max_length=500, blank=True)
    # When the decision was given (or an expired approval renewed): it counts until
    # this plus the deploy's ``signoff_ttl``.
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "decided_at", "pk"]
        constraints = [
            # One decision per person per deploy: two clicks at once, or two
            # workers, cannot count one SRE twice.
            models.UniqueConstraint(
                fields=["run", "approver_name"], name="signoff_one_per_approver"
            ),
            models.CheckConstraint(
                condition=models.Q(decision__in=["approved", "rejected"]),
                name="signoff_decision_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.approver_name} {self.decision} deploy #{self.run_id}"
