"""The deploy page's part for a deploy GitHub's protection rules hold: what it waits
for, and approve or reject for SREs who are reviewers in GitHub."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from controlplane.permissions import role_required
from controlplane.roles import Role
from deploys.engine import approval
from deploys.models import DeployEvent, DeployRun

HOLD_KINDS = (DeployEvent.Kind.APPROVAL_WAITING, DeployEvent.Kind.APPROVAL_SENT)


def approval_context(
    run: DeployRun, events: list[DeployEvent], can_act: bool
) -> dict[str, Any]:
    """``approval``: the latest "waiting for approval" event while the deploy is
    still held (nothing but reviews since); ``can_review``: show the buttons."""
    held: DeployEvent | None = None
    if not run.is_final:
        for event in reversed(events):
            if event.kind == DeployEvent.Kind.APPROVAL_WAITING:
                held = event
                break
            if event.kind not in HOLD_KINDS:
                break
    # GitHub said whether the control plane's GitHub user may review this one.
    can_review = bool(held is not None and can_act and held.detail.get("can_approve"))
    return {"approval": held, "can_review": can_review}


@require_POST
@role_required(Role.SRE)
def run_review(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject the deploy in GitHub (audited, with the comment)."""
    run = get_object_or_404(DeployRun.objects.select_related("environment"), pk=pk)
    state = request.POST.get("state", "")
    comment = request.POST.get("comment", "").strip()[:400]
    if state not in ("approved", "rejected"):
        messages.error(request, "Choose approve or reject.")
        return redirect("deploys:run-detail", pk=run.pk)
    try:
        approval.review(run, request.user, state, comment)
    except approval.ReviewRefused as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Deploy #{run.pk} {state} in GitHub.")
    return redirect("deploys:run-detail", pk=run.pk)
