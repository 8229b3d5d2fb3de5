"""Deploy events SREs need to hear about, for the notification outbox: a deploy
failed, failed over to another runner, waits with no healthy runner, awaits
approvals in the control plane, or broke glass."""

from __future__ import annotations

from django.db import models
from django.urls import reverse

from controlplane.notifications import Draft, Kind, Scanner, Severity, draft
from deploys.models import DeployAttempt, DeployEvent, DeployRun
from deploys.signoff_notify import signoff_draft

# Failures that are a deploy policy working (warnings, not outages).
POLICY_REASONS = (
    DeployRun.Reason.FROZEN,
    DeployRun.Reason.NOT_PROMOTED,
    DeployRun.Reason.REJECTED,
)


def deploy_events() -> models.QuerySet[DeployEvent]:
    return DeployEvent.objects.select_related("run__environment", "attempt__runner")


def from_deploy_event(event: DeployEvent) -> Draft | None:
    signoff = signoff_draft(event)
    if signoff is not None:
        return signoff
    Event = DeployEvent.Kind
    run = event.run
    env = run.environment.name
    link = reverse("deploys:run-detail", args=[run.pk])
    base = {"deploy": run.pk, "environment": env, "ref": run.ref}
    if event.kind == Event.FAILED:
        reason = run.reason or ""
        return draft(
            Kind.DEPLOY_FAILED,
            f"Deploy #{run.pk} of {run.ref} to {env} failed",
            event.message,
            link,
            f"deploy-failed:{run.pk}",
            run.runbook_slug or "deploy-failed",
            # A freeze, the promotion rule or a rejection stopping a deploy is the
            # policy working, not an outage.
            Severity.WARNING if reason in POLICY_REASONS else None,
            event.created_at,
            {**base, "reason": reason},
        )
    if event.kind == Event.GATE_PASSED and event.attempt and event.attempt.number > 1:
        # The new attempt's runner is known only here: the failover decision itself
        # (a FAILOVER event) is written before the gate picks the next runner.
        previous = (
            DeployAttempt.objects.filter(run=run, number=event.attempt.number - 1)
            .select_related("runner")
            .first()
        )
        source = previous.runner.name if previous else ""
        reason = previous.failover_reason if previous else ""
        target = event.attempt.runner.name
        return draft(
            Kind.DEPLOY_FAILOVER,
            f"Deploy #{run.pk} to {env} failed over from {source} to {target}",
            f"Reason: {reason or 'unknown'}. Attempt {event.attempt.number} "
            f"goes to {target}.",
            link,
            f"deploy-failover:{run.pk}:{event.attempt.number}",
            "deploy-failed-over",
            None,
            event.created_at,
            {**base, "from_runner": source, "to_runner": target, "reason": reason},
        )
    if event.kind == Event.GATE_WAITING and "considered" in (event.detail or {}):
        passed_over = {
            str(item.get("runner", "")): "; ".join(item.get("passed_over") or [])
            for item in event.detail["considered"]
            if isinstance(item, dict)
        }
        why = "\n".join(f"{name}: {text}" for name, text in passed_over.items())
        return draft(
            Kind.NO_HEALTHY_RUNNER,
            f"Deploy #{run.pk} to {env} is waiting: no healthy runner in the pool",
            why or event.message,
            link,
            # Once per run: the gate writes a new event whenever its reasons change.
            f"no-healthy-runner:{run.pk}",
            "deploy-no-healthy-runner",
            None,
            event.created_at,
            {**base, "runners": passed_over},
        )
    return None


SCANNER = Scanner("deploy_events", deploy_events, from_deploy_event)
