"""Approvals in the control plane on the pages: the deploy page's panel (who
approved, who may still, break-glass), and the page the notification links to,
where an SRE approves or rejects (not GitHub's reviews: ``approval_views``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from controlplane.permissions import role_required
from controlplane.roles import Role, has_role
from deploys import signoff
from deploys.models import DeployEvent, DeployRun


def signoff_context(
    request: HttpRequest,
    run: DeployRun,
    events: list[DeployEvent],
    now: datetime,
) -> dict[str, Any]:
    """``signoff``: the deploy's verdict (None when its environment needed no
    approval); ``can_signoff``: this user may approve or reject now;
    ``signoff_blocked``: why this SRE may not; ``can_break_glass``: an admin may
    skip them; ``break_glass``: the break-glass event, if an admin broke glass."""
    glass = next((e for e in events if e.kind == DeployEvent.Kind.BREAK_GLASS), None)
    ctx: dict[str, Any] = {
        "signoff": None,
        "can_signoff": False,
        "signoff_blocked": "",
        "break_glass": glass,
        "signoff_dispatched": False,
        "can_break_glass": False,
    }
    if run.timeout("signoffs_required") <= 0:
        return ctx
    judged = signoff.verdict(run, now)
    dispatched = any(e.kind == DeployEvent.Kind.GATE_PASSED for e in events)
    ctx.update(signoff=judged, signoff_dispatched=dispatched)
    if dispatched or not judged.awaited or not has_role(request.user, Role.SRE):
        return ctx
    ctx["can_break_glass"] = has_role(request.user, Role.ADMIN)
    name = request.user.get_username()
    if run.requester_id is not None and run.requester_id == request.user.pk:
        ctx["signoff_blocked"] = (
            "You requested this deploy: another SRE must approve it (two-person rule)."
        )
    elif any(a.by == name for a in judged.approvals):
        ctx["signoff_blocked"] = "You approved this deploy; another SRE must too."
    else:
        ctx["can_signoff"] = True
    return ctx


DECISIONS = {
    "approve": signoff.approve,
    "reject": signoff.reject,
    "break_glass": signoff.break_glass,
}
DONE = {
    "approve": "approved in the control plane",
    "reject": "rejected in the control plane",
    "break_glass": "approvals skipped by break-glass",
}


@require_http_methods(["GET", "POST"])
@role_required(Role.SRE)
def run_signoff(request: HttpRequest, pk: int) -> HttpResponse:
    """GET (the notification's link): the deploy, its approvals and the form.
    POST: approve or reject it in the control plane (audited), back to its page."""
    run = get_object_or_404(DeployRun.objects.select_related("environment"), pk=pk)
    if request.method == "POST":
        decision = request.POST.get("decision", "")
        reason = request.POST.get("reason", "")
        act = DECISIONS.get(decision)
        if act is None:
            messages.error(request, "Choose approve, reject or break glass.")
            return redirect("deploys:run-signoff", pk=run.pk)
        try:
            act(run, request.user, reason)
        except signoff.SignOffRefused as exc:
            messages.error(request, f"Not recorded: {exc.message}")
            return redirect("deploys:run-signoff", pk=run.pk)
        messages.success(request, f"Deploy #{run.pk}: {DONE[decision]}.")
        return redirect("deploys:run-detail", pk=run.pk)
    events = list(run.events.order_by("created_at", "pk"))
    ctx = {"run": run, "env": run.environment}
    ctx.update(signoff_context(request, run, events, timezone.now()))
    return render(request, "deploys/signoff.html", ctx)
