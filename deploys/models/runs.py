"""Deploy runs, their attempts and their timeline."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.utils import timezone

from controlplane import audit
from deploys import enqueue
from deploys.models.environments import Environment
from deploys.models.signoff_rules import SIGNOFF_SETTINGS


class DeployRunQuerySet(models.QuerySet["DeployRun"]):
    def active(self) -> DeployRunQuerySet:
        return self.filter(state__in=DeployRun.ACTIVE_STATES)

    def queued(self) -> DeployRunQuerySet:
        return self.filter(state=DeployRun.State.QUEUED)

    def unfinished(self) -> DeployRunQuerySet:
        return self.exclude(state__in=DeployRun.FINAL_STATES)

    def due(self, now: Any) -> DeployRunQuerySet:
        """Runs whose deadline for another look has passed (the reconciler's scan)."""
        return self.filter(next_check_at__lte=now)

    def with_latest_attempt(self) -> DeployRunQuerySet:
        """Runs with what a list row shows, in the one query that loads them: the
        environment, the runner of the latest attempt (``runner_name``),
        ``attempt_count`` and ``failover_count``."""
        latest = DeployAttempt.objects.filter(run=OuterRef("pk")).order_by("-number")
        return self.select_related("environment").annotate(
            runner_name=Subquery(latest.values("runner__name")[:1]),
            attempt_count=Count("attempts", distinct=True),
            failover_count=Count(
                "attempts", filter=~Q(attempts__failover_reason=""), distinct=True
            ),
            # Held for approvals in the control plane: the latest of its approval
            # waits and sign-offs is a wait (``state_text``).
            signoff_hold=Subquery(
                DeployEvent.objects.filter(run=OuterRef("pk"))
                .filter(
                    Q(kind=DeployEvent.Kind.SIGNED_OFF)
                    | Q(kind=DeployEvent.Kind.GATE_WAITING, detail__has_key="signoff")
                )
                .order_by("-created_at", "-pk")
                .values("kind")[:1]
            ),
            # An admin broke glass (a freeze, approvals): flagged in every list.
            break_glass=Exists(
                DeployEvent.objects.filter(
                    run=OuterRef("pk"), kind=DeployEvent.Kind.BREAK_GLASS
                )
            ),
        )

    def wake_next_queued(self, environment_id: int) -> None:
        """After commit, advance the oldest queued run of the environment, if any."""
        next_id = (
            self.queued()
            .filter(environment_id=environment_id)
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)
            .first()
        )
        if next_id is not None:
            enqueue.advance_on_commit(next_id)


class DeployRun(models.Model):
    """One requested deploy of a ref to an environment, through its attempts."""

    class State(models.TextChoices):
        QUEUED = "queued"
        GATING = "gating"
        DISPATCHING = "dispatching"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Reason(models.TextChoices):
        NONE = "", "none"
        DEPLOY_FAILED = "deploy_failed", "a deploy step failed"
        NO_HEALTHY_RUNNER = "no_healthy_runner", "no healthy runner"
        MISSING_SECRETS = "missing_secrets", "required secrets missing"
        MAX_ATTEMPTS = "max_attempts", "every attempt failed over"
        DISPATCH_REJECTED = "dispatch_rejected", "GitHub refused the dispatch"
        WRONG_RUNNER = "wrong_runner", "the job ran on another runner"
        WRONG_SHA = "wrong_sha", "the job did not deploy the requested commit"
        CANCELLED = "cancelled", "cancelled by a person"
        FROZEN = "frozen", "the environment froze before the deploy started"
        APPROVAL_TIMEOUT = "approval_timeout", "not approved in GitHub in time"
        REJECTED_IN_GITHUB = "rejected_in_github", "a reviewer rejected it in GitHub"
        NOT_PROMOTED = "not_promoted", "the commit was not promoted here first"
        REJECTED = "rejected", "an SRE rejected it in the control plane"

    ACTIVE_STATES = (State.GATING, State.DISPATCHING, State.RUNNING)
    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
    # The environment settings recorded on each deploy when it is requested.
    TIMEOUTS: tuple[str, ...] = ("pickup_timeout", "gate_timeout", "busy_wait")
    TIMEOUTS += ("approval_timeout", *SIGNOFF_SETTINGS)

    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="deploys"
    )
    ref = models.CharField(max_length=255)
    sha = models.CharField(max_length=40, blank=True)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requester_name = models.CharField(max_length=150, blank=True)
    change_ticket = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    reason = models.CharField(
        max_length=30, choices=Reason.choices, blank=True, default=Reason.NONE
    )
    message = models.CharField(max_length=500, blank=True)
    # The environment's timeouts in force when the deploy was requested (seconds by
    # setting name, see ``TIMEOUTS``): the engine and the deploy's page use these,
    # so changing the environment later does not rewrite this deploy's story.
    timeouts = models.JSONField(default=dict, blank=True)
    # When the engine next has to look at this run (pickup timeout, poll, gate
    # retry); None when nothing is pending. The reconciler scans it.
    next_check_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    gate_started_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DeployRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # At most one active deploy per environment: the database decides, so
            # two workers promoting queued runs at once cannot both win.
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(state__in=["gating", "dispatching", "running"]),
                name="deploy_one_active_per_env",
            ),
            models.CheckConstraint(
                condition=Q(
                    state__in=[
                        "queued",
                        "gating",
                        "dispatching",
                        "running",
                        "succeeded",
                        "failed",
                        "cancelled",
                    ]
                ),
                name="deploy_state_valid",
            ),
        ]
        indexes = [
            # The reconciler: DeployRun.objects.due(now), runs with a deadline.
            models.Index(
                fields=["next_check_at"],
                name="deploy_next_check_idx",
                condition=Q(next_check_at__isnull=False),
            ),
            # The next queued run of an environment, oldest first.
            models.Index(
                fields=["environment", "created_at"],
                name="deploy_queued_idx",
                condition=Q(state="queued"),
            ),
            # The deploys list filtered by environment, newest first.
            models.Index(
                fields=["environment", "-created_at"], name="deploy_env_recent_idx"
            ),
            # Finished deploys of an environment by end time: DORA figures, the
            # last good deploy, rollback targets.
            models.Index(
                fields=["environment", "finished_at"], name="deploy_env_finished_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"deploy #{self.pk} of {self.ref} to {self.environment_id}"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES

    @property
    def state_text(self) -> str:
        """The state as lists show it: "awaiting approval" for a deploy the gate
        holds for approvals (runs loaded ``with_latest_attempt``)."""
        held = getattr(self, "signoff_hold", None) == DeployEvent.Kind.GATE_WAITING
        return "awaiting approval" if held and self.state == "gating" else self.state

    @property
    def runbook_slug(self) -> str:
        return DEPLOY_RUNBOOKS.get(self.reason, "")

    def timeout(self, name: str) -> int:
        """Seconds of the environment's timeout ``name`` for this deploy: as
        recorded when it was requested, else (older deploys) the setting now."""
        recorded = self.timeouts.get(name) if isinstance(self.timeouts, dict) else None
        if isinstance(recorded, int):
            return recorded
        return int(getattr(self.environment, name))

    def current_attempt(self) -> DeployAttempt | None:
        return self.attempts.select_related("runner").order_by("-number").first()

    def finish(
        self,
        state: str,
        reason: str,
        message: str,
        now: datetime,
        *,
        attempt: DeployAttempt | None = None,
        attempt_state: str | None = None,
        conclusion: str = "",
        cleanup: bool = False,
        event_message: str = "",
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Move the run to a final state, once; False when it had already finished.

        ``attempt`` ends in ``attempt_state`` (with GitHub's ``conclusion``) if
        given; ``cleanup`` keeps a deadline so the engine comes back to cancel a
        GitHub run that may still be going. The final event says ``event_message``
        (default: ``message``) with ``detail``. The environment's next queued run is
        woken after commit."""
        kinds: dict[str, str] = {
            self.State.SUCCEEDED: DeployEvent.Kind.SUCCEEDED,
            self.State.FAILED: DeployEvent.Kind.FAILED,
        }
        with transaction.atomic():
            moved = (
                DeployRun.objects.filter(pk=self.pk)
                .exclude(state__in=self.FINAL_STATES)
                .update(
                    state=state,
                    reason=reason,
                    message=message[:500],
                    finished_at=now,
                    next_check_at=now if cleanup else None,
                )
            )
            if not moved:
                return False
            if attempt is not None and attempt_state is not None:
                fields: dict[str, Any] = {"state": attempt_state, "finished_at": now}
                if conclusion:
                    fields["conclusion"] = conclusion
                DeployAttempt.objects.filter(pk=attempt.pk).exclude(
                    state__in=DeployAttempt.FINAL_STATES
                ).update(**fields)
            DeployEvent.objects.create(
                run=self,
                attempt=attempt,
                kind=kinds.get(state, DeployEvent.Kind.CANCELLED),
                message=(event_message or message)[:500],
                detail=detail or {},
                created_at=now,
            )
            DeployRun.objects.wake_next_queued(self.environment_id)
        return True

    def cancel(self, actor: audit.Actor, note: str = "") -> bool:
        """Cancel the deploy (and, through the engine, its GitHub run); False when
        it had already finished."""
        now = timezone.now()
        name = audit.actor_name(actor)
        with transaction.atomic():
            moved = self.finish(
                self.State.CANCELLED,
                self.Reason.CANCELLED,
                note or "cancelled",
                now,
                # The engine comes back at once to cancel the GitHub run.
                cleanup=True,
                event_message=f"cancelled by {name}" + (f": {note}" if note else ""),
                detail={"by": name},
            )
            if not moved:
                return False
            self.attempts.exclude(state__in=DeployAttempt.FINAL_STATES).filter(
                cancel_requested_at__isnull=True
            ).update(cancel_requested_at=now)
            audit.record(actor, "deploy.cancel", self, note=note)
            enqueue.advance_on_commit(self.pk)
        self.refresh_from_db()
        return True


DEPLOY_RUNBOOKS: dict[str, str] = {
    DeployRun.Reason.NO_HEALTHY_RUNNER: "deploy-no-healthy-runner",
    DeployRun.Reason.MISSING_SECRETS: "secret-missing",
    DeployRun.Reason.MAX_ATTEMPTS: "deploy-failed-over",
    DeployRun.Reason.DEPLOY_FAILED: "deploy-failed",
    DeployRun.Reason.DISPATCH_REJECTED: "deploy-dispatch-rejected",
    DeployRun.Reason.WRONG_RUNNER: "deploy-wrong-runner",
    DeployRun.Reason.WRONG_SHA: "deploy-wrong-sha",
    DeployRun.Reason.FROZEN: "deploy-frozen",
    DeployRun.Reason.APPROVAL_TIMEOUT: "deploy-github-approval",
    DeployRun.Reason.REJECTED_IN_GITHUB: "deploy-github-approval",
    DeployRun.Reason.NOT_PROMOTED: "deploy-not-promoted",
    DeployRun.Reason.REJECTED: "deploy-rejected",
}


def new_correlation_token() -> str:
    # Short enough for a run-name, random enough never to match another run.
    return "dpl-" + secrets.token_hex(12)


# A correlation token inside a run's name (the reference workflows' run-name).
CORRELATION_TOKEN = re.compile(r"\bdpl-[0-9a-f]{24}\b")


class DeployAttempt(models.Model):
    """One dispatch of a deploy run onto one runner."""

    class State(models.TextChoices):
        PENDING = "pending"  # created, not dispatched yet
        DISPATCHED = "dispatched"  # GitHub accepted it; waiting for a runner
        RUNNING = "running"  # the job is in progress on a runner
        CANCELLING = "cancelling"  # failing over: the old run is being cancelled
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class FailoverReason(models.TextChoices):
        NONE = "", "none"
        PICKUP_TIMEOUT = "pickup_timeout", "not picked up in time"
        RUNNER_UNHEALTHY = "runner_unhealthy", "the runner turned unhealthy"
        INFRASTRUCTURE = "infrastructure_failure", "runner lost or job cancelled"
        DISPATCH_LOST = "dispatch_lost", "the dispatch left no run on GitHub"

    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    run = models.ForeignKey(
        DeployRun, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField()
    runner = models.ForeignKey(
        "runners.Runner", on_delete=models.PROTECT, related_name="deploy_attempts"
    )
    # The workflow's run-name carries it, so a run can be found after a crash.
    token = models.CharField(max_length=64, unique=True, default=new_correlation_token)
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.PENDING
    )
    github_run_id = models.BigIntegerField(null=True, blank=True)
    html_url = models.URLField(max_length=500, blank=True)
    # The runner GitHub reports the job on (it must be the intended one).
    job_runner_name = models.CharField(max_length=200, blank=True)
    conclusion = models.CharField(max_length=20, blank=True)
    failover_reason = models.CharField(
        max_length=30, choices=FailoverReason.choices, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the one worker allowed to send this attempt's dispatch.
    dispatch_claimed_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Last seen with the pinned job not yet queued for a runner (blocked on the jobs it
    # needs, or on a protection rule): the pickup clock starts no earlier.
    job_blocked_at = models.DateTimeField(null=True, blank=True)
    picked_up_at = models.DateTimeField(null=True, blank=True)
    # Cancelling the GitHub run: decided, cancel sent, force-cancel sent.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_sent_at = models.DateTimeField(null=True, blank=True)
    force_cancelled_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Webhook-first tracking: when a webhook about this attempt's run was last
    # applied, when GitHub was last polled for its jobs (and the ETag that answer
    # carried: an unchanged list answers 304 for free), and what workflow_run and
    # deployment_status webhooks said of the run and its GitHub deployment.
    webhook_seen_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)
    jobs_etag = models.CharField(max_length=200, blank=True)
    github_run_status = models.CharField(max_length=20, blank=True)
    github_run_conclusion = models.CharField(max_length=20, blank=True)
    github_deployment_id = models.BigIntegerField(null=True, blank=True)
    github_deployment_state = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["run", "number", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "number"], name="attempt_number_uniq"
            ),
        ]
        indexes = [
            # The deploying runners' check, every second: the runners of the
            # active attempts (runners.deploying); few rows among all attempts.
            models.Index(
                fields=["runner"],
                name="attempt_active_runner_idx",
                condition=~Q(state__in=("succeeded", "failed", "cancelled")),
            ),
            # Webhooks find the attempt of a workflow run by its GitHub run id.
            models.Index(
                fields=["github_run_id"],
                name="attempt_github_run_idx",
                condition=Q(github_run_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of run {self.run_id}"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES


class DeployEvent(models.Model):
    """One entry of a deploy's timeline (also its audit trail)."""

    class Kind(models.TextChoices):
        REQUESTED = "requested"
        BREAK_GLASS = "break_glass"
        GATING = "gating"
        GATE_WAITING = "gate_waiting"
        GATE_PASSED = "gate_passed"
        DISPATCHED = "dispatched"
        DISPATCH_RECOVERED = "dispatch_recovered"
        DISPATCH_RETRY = "dispatch_retry"
        PICKED_UP = "picked_up"
        HEAD_MOVED = "head_moved"
        # The GitHub environment's protection rules hold the job; a review sent
        # from here; the rules passed and the job is queued for its runner.
        APPROVAL_WAITING = "approval_waiting"
        APPROVAL_SENT = "approval_sent"
        APPROVED = "approved"
        FAILOVER = "failover"
        CANCEL_SENT = "cancel_sent"
        FORCE_CANCEL_SENT = "force_cancel_sent"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        # Approvals in the control plane (not GitHub's): one given; enough of them.
        SIGNOFF_APPROVED = "signoff_approved", "Approved (control plane)"
        SIGNED_OFF = "signed_off", "Approvals Complete"
        # Sent without an optional input the workflow file does not declare.
        INPUT_LEFT_OUT = "input_left_out"

    run = models.ForeignKey(DeployRun, on_delete=models.CASCADE, related_name="events")
    attempt = models.ForeignKey(
        DeployAttempt,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.CharField(max_length=500, blank=True)
    # Structured facts: the gate's runners considered and why each was passed over,
    # GitHub run ids, conclusions. Never a secret.
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            # A run's timeline in order.
            models.Index(fields=["run", "created_at"], name="deploy_event_run_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.kind}"
