"""Runs of the diagnostics and agent-install workflows on a runner, and their reports."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone


def new_token() -> str:
    # In the run's inputs and the report's body: random, short, never a secret (the
    # runner's heartbeat token is what authenticates the report).
    return "diag-" + secrets.token_hex(12)


class HostRunQuerySet(models.QuerySet["HostRun"]):
    def in_flight(self) -> HostRunQuerySet:
        return self.filter(finished_at__isnull=True)

    def due(self, now: datetime) -> HostRunQuerySet:
        return self.in_flight().filter(next_look_at__lte=now)


class HostRun(models.Model):
    """One dispatch of a workflow pinned to a runner: diagnostics or an agent install."""

    class Kind(models.TextChoices):
        DIAGNOSTICS = "diagnostics", "Diagnostics"
        AGENT_INSTALL = "agent_install", "Agent install"
        CANARY = "canary", "Canary"

    class State(models.TextChoices):
        DISPATCHING = "dispatching"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        TIMED_OUT = "timed_out"
        # A canary that gave way to an SRE's diagnostics run or agent install on
        # its runner (diagnostics.preempt): it says nothing of the runner.
        CANCELLED = "cancelled"

    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED)

    runner = models.ForeignKey(
        "runners.Runner", on_delete=models.CASCADE, related_name="host_runs"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.DISPATCHING
    )
    token = models.CharField(max_length=40, unique=True, default=new_token)
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    next_look_at = models.DateTimeField(default=timezone.now)
    github_run_id = models.BigIntegerField(null=True, blank=True)
    html_url = models.URLField(max_length=500, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When a runner took the job (the canary's pickup; null: not yet or never).
    started_at = models.DateTimeField(null=True, blank=True)
    # Why it failed or timed out, in words for the runner page.
    detail = models.TextField(blank=True)
    # The redacted report (diagnostics only) and its key facts, compared run to run.
    report = models.JSONField(null=True, blank=True)
    facts = models.JSONField(default=dict, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)

    objects = HostRunQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-pk"]
        constraints = [
            # One workflow in flight per runner: a second would queue behind the
            # first on the same runner, and the page would not know which answered.
            models.UniqueConstraint(
                fields=["runner"],
                condition=Q(finished_at__isnull=True),
                name="hostrun_one_in_flight_per_runner",
            ),
        ]
        indexes = [
            # The sweep: runs in flight whose next look is due.
            models.Index(
                fields=["next_look_at"],
                condition=Q(finished_at__isnull=True),
                name="hostrun_in_flight_due",
            ),
            # The runner page: a runner's latest runs and reports.
            models.Index(fields=["runner", "-requested_at"], name="hostrun_runner"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.runner_id} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES

    @property
    def pickup_seconds(self) -> float | None:
        """Seconds from the request (the dispatch) until a runner took the job."""
        if self.started_at is None:
            return None
        return max(0.0, (self.started_at - self.requested_at).total_seconds())

    @property
    def job_seconds(self) -> float | None:
        """Seconds the job ran on its runner, once it ended."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state": self.state,
            "token": self.token,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "deadline": self.deadline,
            "finished_at": self.finished_at,
            "detail": self.detail,
            "html_url": self.html_url,
        }
