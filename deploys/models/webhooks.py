"""GitHub webhook deliveries, the hooks that send them, our redelivery requests,
and the workflow jobs they report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.utils import timezone

from controlplane.github import JobInfo, StepInfo


class WebhookDeliveryQuerySet(models.QuerySet["WebhookDelivery"]):
    def older_than(self, cutoff: datetime) -> WebhookDeliveryQuerySet:
        return self.filter(received_at__lt=cutoff)


class WebhookDelivery(models.Model):
    """One webhook delivery from GitHub, stored before it is processed."""

    class Outcome(models.TextChoices):
        PENDING = "pending"  # stored, not processed yet
        MATCHED = "matched"  # it concerned a deploy or a registered runner
        UNMATCHED = "unmatched"  # ours, but nothing here waited for it
        IGNORED = "ignored"  # not for us: another repository or an unused event
        FAILED = "failed"  # malformed, or processing raised (see ``error``)

    FINAL_OUTCOMES = (
        Outcome.MATCHED,
        Outcome.UNMATCHED,
        Outcome.IGNORED,
        Outcome.FAILED,
    )

    # GitHub's X-GitHub-Delivery: one id per event, kept across redeliveries, so a
    # unique constraint on it makes processing exactly-once.
    delivery_id = models.CharField(max_length=64)
    event = models.CharField(max_length=50)
    action = models.CharField(max_length=50, blank=True)
    # None when the body was not a JSON object (the delivery is then failed).
    payload = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=10, choices=Outcome.choices, default=Outcome.PENDING
    )
    # Why a delivery was ignored or unmatched, in words an SRE can act on.
    reason = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)
    repository = models.CharField(max_length=200, blank=True)
    github_run_id = models.BigIntegerField(null=True, blank=True)
    deploy_run = models.ForeignKey(
        "DeployRun",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_deliveries",
    )

    objects = WebhookDeliveryQuerySet.as_manager()

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
            ),
            # The Webhooks page (newest first), its time filter and the pruning.
            models.Index(fields=["received_at"], name="webhook_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}"


class WebhookHook(models.Model):
    """The GitHub webhook that delivers to us, and how far its log was checked."""

    class Scope(models.TextChoices):
        REPOSITORY = "repository"
        ORGANIZATION = "organization"

    scope = models.CharField(max_length=12, choices=Scope.choices)
    # owner/name for a repository hook, the login for an organization hook.
    owner = models.CharField(max_length=200)
    hook_id = models.BigIntegerField()
    # Deliveries made before this were all checked by an earlier, complete scan.
    checked_until = models.DateTimeField(null=True, blank=True)
    # A scan of the log that a pass's request cap cut short goes on from here next
    # pass (GitHub's cursor, "" for the first page), after a look at the deliveries newer than the newest
    # that scan has seen (``scan_top_id``; delivery ids grow with time).
    resume_cursor = models.CharField(max_length=200, blank=True)
    # Within the page at ``resume_cursor``, deliveries with this id or more are done.
    resume_below_id = models.BigIntegerField(null=True, blank=True)
    scan_top_id = models.BigIntegerField(null=True, blank=True)
    scan_top = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["scope", "owner", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "owner", "hook_id"], name="webhook_hook_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} hook {self.hook_id} of {self.owner}"


class WebhookRedelivery(models.Model):
    """Our requests that GitHub redeliver one event (by its guid) to us."""

    guid = models.CharField(max_length=64)
    event = models.CharField(max_length=50, blank=True)
    # GitHub's id of the failed delivery we asked it to attempt again.
    github_delivery_id = models.BigIntegerField()
    attempts = models.PositiveSmallIntegerField(default=0)
    first_requested_at = models.DateTimeField(default=timezone.now)
    last_requested_at = models.DateTimeField(default=timezone.now)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-last_requested_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["guid"], name="webhook_redelivery_guid_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"redelivery of {self.guid} ({self.attempts} attempts)"


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
    # The run's commit (its ref's SHA at dispatch): the engine checks it against
    # the deploy's requested SHA.
    head_sha = models.CharField(max_length=40, blank=True)
    # name, number, status and conclusion of each step: a failed step tells a broken
    # deploy from a lost runner without asking GitHub.
    steps = models.JSONField(default=list, blank=True)
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
            "head_sha": str(job.get("head_sha") or "")[:40],
            "steps": [
                {
                    "name": str(step.get("name") or ""),
                    "number": int(step.get("number") or 0),
                    "status": str(step.get("status") or ""),
                    "conclusion": step.get("conclusion"),
                }
                for step in job.get("steps") or ()
            ],
        }

    @staticmethod
    def payload_from_info(job: JobInfo, now: datetime) -> dict[str, Any]:
        """A ``workflow_job`` object as a webhook would carry it, from a polled job."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "id": job.id,
            "run_id": job.run_id,
            "name": job.name,
            "status": job.status,
            "conclusion": job.conclusion,
            "labels": list(job.labels),
            "runner_name": job.runner_name,
            "html_url": job.html_url,
            "created_at": iso(job.created_at or job.started_at or now),
            "started_at": iso(job.started_at),
            "completed_at": iso(job.completed_at),
            "head_sha": job.head_sha,
            "steps": [
                {
                    "name": s.name,
                    "number": s.number,
                    "status": s.status,
                    "conclusion": s.conclusion,
                }
                for s in job.steps
            ],
        }

    def as_info(self) -> JobInfo:
        """The job as the engine reads it, whether a webhook or a poll reported it."""
        return JobInfo(
            id=self.github_id,
            run_id=self.run_id,
            name=self.name,
            status=self.status,
            conclusion=self.conclusion or None,
            runner_id=None,
            runner_name=self.runner_name or None,
            labels=tuple(str(label) for label in self.labels or ()),
            html_url=self.html_url or None,
            started_at=self.started_at,
            completed_at=self.completed_at,
            created_at=self.created_at,
            head_sha=self.head_sha,
            steps=tuple(
                StepInfo(
                    name=str(step.get("name") or ""),
                    number=int(step.get("number") or 0),
                    status=str(step.get("status") or ""),
                    conclusion=step.get("conclusion"),
                )
                for step in self.steps or ()
            ),
        )
