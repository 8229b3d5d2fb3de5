"""What the control plane answered GitHub as a custom deployment protection rule."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from deploys.models.environments import Environment
from deploys.models.runs import DeployRun
from deploys.models.webhooks import WebhookDelivery


class GateReview(models.Model):
    """One run waiting on the control plane's protection rule, and the answer sent.

    One per ``deployment_protection_rule`` delivery: a redelivered event is the same
    delivery, so a run is never answered twice for one request.
    """

    class Decision(models.TextChoices):
        PENDING = "", "not answered yet"
        APPROVED = "approved"
        REJECTED = "rejected"

    delivery = models.OneToOneField(
        WebhookDelivery, on_delete=models.CASCADE, related_name="gate_review"
    )
    repository = models.CharField(max_length=200)
    github_run_id = models.BigIntegerField()
    github_environment = models.CharField(max_length=255)
    environment = models.ForeignKey(
        Environment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="gate_reviews",
    )
    # The control plane's own deploy, when the run is one of its dispatches.
    deploy_run = models.ForeignKey(
        DeployRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="gate_reviews",
    )
    decision = models.CharField(
        max_length=10, choices=Decision.choices, blank=True, default=Decision.PENDING
    )
    comment = models.CharField(max_length=1000, blank=True)
    # The last failure to decide or to answer (GitHub down, no App credentials).
    error = models.CharField(max_length=500, blank=True)
    tries = models.PositiveSmallIntegerField(default=0)
    requested_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        indexes = [
            models.Index(
                fields=["requested_at"],
                name="gate_review_unanswered_idx",
                condition=models.Q(answered_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.github_run_id} in {self.github_environment}: {self.decision}"

    @property
    def own_dispatch(self) -> bool:
        return self.deploy_run_id is not None
