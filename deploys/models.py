"""Deploys app: GitHub webhook deliveries and the workflow jobs they report."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class WebhookDelivery(models.Model):
    """One webhook delivery from GitHub, stored before it is processed."""

    # GitHub's X-GitHub-Delivery: one id per event, kept across redeliveries, so a
    # unique constraint on it makes processing exactly-once.
    delivery_id = models.CharField(max_length=64)
    event = models.CharField(max_length=50)
    action = models.CharField(max_length=50, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["delivery_id"], name="webhook_delivery_id_uniq"
            )
        ]
        indexes = [
            # The reconciler's "deliveries not processed yet" scan.
            models.Index(
                fields=["received_at"],
                name="webhook_unprocessed_idx",
                condition=models.Q(processed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}"


class WorkflowJobQuerySet(models.QuerySet["WorkflowJob"]):
    def for_runner(self, name: str) -> WorkflowJobQuerySet:
        return self.filter(runner_name=name)


class WorkflowJob(models.Model):
    """A GitHub Actions job as the newest webhook (or poll) described it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        WAITING = "waiting"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    github_id = models.BigIntegerField(unique=True)
    run_id = models.BigIntegerField(db_index=True)
    name = models.CharField(max_length=200)
    workflow_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    conclusion = models.CharField(max_length=20, blank=True)
    labels = models.JSONField(default=list)
    runner_name = models.CharField(max_length=200, blank=True)
    html_url = models.URLField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = WorkflowJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # A runner's recent jobs on its detail page.
            models.Index(
                fields=["runner_name", "-created_at"], name="job_runner_recent_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.github_id} ({self.status})"

    @staticmethod
    def fields_from_payload(job: dict[str, Any]) -> dict[str, Any]:
        """Model fields from a ``workflow_job`` object of a webhook payload."""
        return {
            "run_id": job["run_id"],
            "name": job.get("name") or "",
            "workflow_name": job.get("workflow_name") or "",
            "status": job["status"],
            "conclusion": job.get("conclusion") or "",
            "labels": list(job.get("labels") or []),
            "runner_name": job.get("runner_name") or "",
            "html_url": job.get("html_url") or "",
            "created_at": job.get("created_at") or job.get("started_at"),
            "started_at": job.get("started_at"),
            "completed_at": job.get("completed_at"),
        }
