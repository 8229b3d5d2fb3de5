"""Notifications about approvals in the control plane: a deploy awaits them (with a
link to approve or reject), and an admin broke glass (flagged wherever deploys are
told about)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from controlplane.notifications import Draft, Kind, draft
from deploys.models import DeployEvent


def signoff_draft(event: DeployEvent) -> Draft | None:
    """The notification for an approvals event, None for other events."""
    run = event.run
    env = run.environment.name
    base = {"deploy": run.pk, "environment": env, "ref": run.ref}
    detail = event.detail or {}
    if event.kind == DeployEvent.Kind.GATE_WAITING and "signoff" in detail:
        signoff = detail["signoff"]
        expired = signoff.get("expired") or []
        return draft(
            Kind.DEPLOY_SIGNOFF_AWAITED,
            f"Deploy #{run.pk} of {run.ref} to {env} awaits approval",
            f"{run.requester_name} requested {run.ref} ({run.sha[:12]}) on {env}: "
            f"{event.message}. Approve or reject it from the link.",
            reverse("deploys:run-signoff", args=[run.pk]),
            # Once per deploy, and again whenever approvals it had expired.
            f"signoff-awaited:{run.pk}:{len(expired)}",
            "deploy-rejected",
            None,
            event.created_at,
            {
                **base,
                "requester": run.requester_name,
                "awaited_from": signoff.get("awaited_from", ""),
                "approvals": f"{len(signoff.get('approvals') or [])} of "
                f"{signoff.get('required', 0)}",
            },
        )
    if event.kind == DeployEvent.Kind.BREAK_GLASS:
        return draft(
            Kind.DEPLOY_BREAK_GLASS,
            f"Break-glass: deploy #{run.pk} of {run.ref} to {env}",
            event.message,
            reverse("deploys:run-detail", args=[run.pk]),
            f"break-glass:{run.pk}",
            _glass_runbook(detail),
            None,
            event.created_at,
            {
                **base,
                "break_glass": True,
                "by": detail.get("by") or run.requester_name,
            },
        )
    return None


def _glass_runbook(detail: dict[str, Any]) -> str:
    """The runbook for what break glass broke: approvals, else a freeze or a rule,
    else a JIRA that could not check the ticket (to check it once JIRA is back)."""
    if detail.get("signoffs_skipped"):
        return "deploy-rejected"
    if detail.get("jira_unverified") and not ("freeze" in detail or "rules" in detail):
        return "change-ticket-updates"
    return "deploy-frozen"
