"""A deploy's page: the headline telling what happened, the timeline drawn per
attempt, the countdown and the pool while it waits at the gate, cancel, and
"Redeploy" of a finished deploy's exact commit after a confirmation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from controlplane.permissions import role_required
from controlplane.roles import Role, has_role
from deploys import rules
from deploys.approval_views import approval_context
from deploys.models import DeployAttempt, DeployEvent, DeployRun, Environment
from deploys.request_errors import DeployRequestError
from deploys.signoff_views import signoff_context
from deploys.story import RunbookLink, runbook_link, story
from deploys.triggers import request_deploy
from deploys.views import duration

# Runbook pages for a run without a final reason of its own.
FAILOVER_RUNBOOK = "deploy-failed-over"
WAITING_RUNBOOK = "deploy-waiting-for-runner"
SIGNOFF_RUNBOOK = "deploy-rejected"


@dataclass(frozen=True)
class AttemptRow:
    """One attempt in the table, with its times worked out."""

    attempt: DeployAttempt
    github_url: str
    time_to_pickup: str
    duration: str
    runbook: RunbookLink | None


def _github_url(env: Environment, attempt: DeployAttempt) -> str:
    if attempt.html_url:
        return attempt.html_url
    if attempt.github_run_id:
        return (
            f"https://github.com/{env.repository}/actions/runs/{attempt.github_run_id}"
        )
    return ""


def _rule_offers(run: DeployRun, events: list[DeployEvent]) -> list[dict[str, Any]]:
    """What to do after the gate refused the deploy under the promotion rule: the
    deploy form's own offer (deploy the same commit to the source environment
    first), rebuilt from the facts the gate wrote on the final event."""
    if run.reason != DeployRun.Reason.NOT_PROMOTED:
        return []
    for event in reversed(events):
        promote = (event.detail or {}).get("promote")
        if promote:
            where = {key: promote[key] for key in ("environment", "ref", "sha")}
            refusal = rules.Refusal(
                rules.NOT_PROMOTED, "promote_from", "sha", run.message, promote=where
            )
            return [refusal.detail()]
    return []


def _detail_context(request: HttpRequest, run: DeployRun) -> dict[str, Any]:
    now = timezone.now()
    env = run.environment
    attempts = list(run.attempts.select_related("runner").order_by("number", "pk"))
    events = list(run.events.order_by("created_at", "pk"))
    failover_runbook = runbook_link(FAILOVER_RUNBOOK)
    rows = [
        AttemptRow(
            attempt=a,
            github_url=_github_url(env, a),
            time_to_pickup=duration(a.dispatched_at, a.picked_up_at),
            duration=duration(
                a.picked_up_at or a.dispatched_at,
                a.finished_at or (now if a.dispatched_at else None),
            ),
            runbook=failover_runbook if a.failover_reason else None,
        )
        for a in attempts
    ]
    slug = run.runbook_slug
    if not slug and any(a.failover_reason for a in attempts):
        slug = FAILOVER_RUNBOOK
    if not slug and not run.is_final and events:
        if events[-1].kind == DeployEvent.Kind.GATE_WAITING:
            awaits_signoff = "signoff" in (events[-1].detail or {})
            slug = SIGNOFF_RUNBOOK if awaits_signoff else WAITING_RUNBOOK
    can_act = has_role(request.user, Role.SRE)
    approval = approval_context(run, events, can_act)
    held = approval["approval"]
    told = story(run, attempts, events, now, held.message if held else "")
    gating = run.state == DeployRun.State.GATING
    return {
        "run": run,
        "env": env,
        "attempts": rows,
        "events": events,
        "story": told,
        "duration": duration(
            run.started_at, run.finished_at or (now if run.started_at else None)
        ),
        "runbook": runbook_link(slug),
        "rule_offers": _rule_offers(run, events),
        # While it waits at the gate: the pool as the gate sees it now.
        "pool": env.pick_runner()[1] if gating else None,
        **approval,
        **signoff_context(request, run, events, now),
        "can_cancel": can_act and not run.is_final,
        "can_redeploy": can_act and run.is_final,
        "now": now,
    }


@require_GET
@role_required(Role.VIEWER)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One deploy: what happened in a sentence, its timeline and attempts. htmx
    polls it while the deploy is not final; those requests get the live part."""
    run = get_object_or_404(DeployRun.objects.select_related("environment"), pk=pk)
    ctx = _detail_context(request, run)
    is_htmx = request.headers.get("HX-Request") == "true"
    template = "deploys/_run_live.html" if is_htmx else "deploys/run_detail.html"
    response = render(request, template, ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
@role_required(Role.SRE)
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel the deploy and its GitHub run (audited)."""
    run = get_object_or_404(DeployRun, pk=pk)
    if run.cancel(request.user, request.POST.get("note", "").strip()[:400]):
        messages.success(request, f"Deploy #{run.pk} is cancelled.")
    else:
        messages.warning(request, f"Deploy #{run.pk} had already finished.")
    return redirect("deploys:run-detail", pk=run.pk)


@require_http_methods(["GET", "POST"])
@role_required(Role.SRE)
def run_redeploy(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what a redeploy of this finished deploy would request (its ref and
    exact commit, to the same environment), to confirm. POST: request it through
    the environment's gates like any other deploy."""
    run = get_object_or_404(DeployRun.objects.select_related("environment"), pk=pk)
    env = run.environment
    if not run.is_final:
        messages.error(
            request, f"Deploy #{run.pk} is still {run.state}: redeploy it once done."
        )
        return redirect("deploys:run-detail", pk=run.pk)
    if request.method == "POST":
        try:
            result = request_deploy(
                request.user,
                env,
                run.ref,
                run.change_ticket,
                request.POST.get("idempotency_key", "").strip(),
                request.POST.get("break_glass_reason", ""),
                sha=run.sha,
            )
        except DeployRequestError as exc:
            messages.error(request, f"Redeploy refused: {exc.message}")
            return redirect("deploys:run-detail", pk=run.pk)
        new = result.run
        messages.success(
            request,
            f"Deploy #{new.pk} redeploys {new.ref} ({new.sha[:7]}) to {env.name}.",
        )
        return redirect("deploys:run-detail", pk=new.pk)
    chosen, pool = env.pick_runner()
    ctx = {
        "run": run,
        "env": env,
        "chosen": chosen,
        "redeploy_key": uuid.uuid4().hex,
        "freeze": env.freeze_at(timezone.now()),
    }
    return render(request, "deploys/redeploy_confirm.html", ctx)
