"""Workflow job records: what webhooks and polls said of each GitHub Actions job.

The engine reads a deploy's jobs from here (webhook-first); a poll of GitHub writes
what it saw here too, so both sources merge into one newest-known view.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from deploys.models import WorkflowJob
from runners.models import Runner

__all__ = ["record_job"]

# Webhooks arrive in any order: never let an older event move a job backwards.
_STATUS_RANK = {"queued": 0, "waiting": 0, "in_progress": 1, "completed": 2}


def record_job(job: dict[str, Any]) -> tuple[WorkflowJob, bool]:
    """Upsert a workflow job from a webhook (or poll) and note its runner's busy state.

    Returns the job and whether it names a registered runner (its runner, or for a
    queued job a runner whose name is one of its labels).
    """
    fields = WorkflowJob.fields_from_payload(job)
    existing = (
        WorkflowJob.objects.select_for_update().filter(github_id=job["id"]).first()
    )
    if existing is None:
        record = WorkflowJob.objects.create(github_id=job["id"], **fields)
    else:
        record = existing
        if _STATUS_RANK.get(fields["status"], 0) >= _STATUS_RANK.get(
            existing.status, 0
        ):
            for name, value in fields.items():
                # A later event can lack what an earlier one had (runner of a job
                # that was cancelled while queued): keep what we know, and when
                # the job was created as first recorded.
                if value not in ("", None, []) and name != "created_at":
                    setattr(record, name, value)
            record.status = fields["status"]
            record.updated_at = timezone.now()
            record.save()
    if record.runner_name:
        # GitHub's runner list is known to lag on busy; the job events are fresher.
        known = Runner.objects.filter(name=record.runner_name).update(
            github_busy=record.status == WorkflowJob.Status.IN_PROGRESS
        )
        return record, bool(known)
    labels = [str(label) for label in record.labels or ()]
    return record, Runner.objects.filter(name__in=labels).exists()
