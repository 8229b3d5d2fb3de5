"""The deploys pages: the deploys list, the trigger form with the runner the gate
would pick right now, a deploy's live timeline with cancel and redeploy, and the
environment pages with their pool's live health."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from controlplane.permissions import role_required
from controlplane.roles import Role, has_role
from deploys.commits import deploy_history
from deploys.filters import DeployRunFilterSet, WebhookDeliveryFilterSet
from deploys.models import (
    DeployRun,
    Environment,
    EnvironmentRunner,
    FreezeWindow,
    WebhookDelivery,
)
from deploys.models.rules_fields import ref_patterns
from deploys.redeploy import redeploy_last_good
from deploys.request_errors import DeployRefused, DeployRequestError, RuleRefused
from deploys.rules import period_text
from deploys.triggers import request_deploy
from runners.models import Runner

PAGE_SIZE = 50
RECENT_DEPLOYS = 20

# Runbook pages (``/runbooks/<slug>/``) for a run's final reason; reasons without a
# page of their own point at the closest one.
FAILOVER_RUNBOOK = "deploy-failed-over"
WAITING_RUNBOOK = "deploy-waiting-for-runner"


def duration(start: datetime | None, end: datetime | None) -> str:
    """A short human duration ("45 s", "3 min 5 s", "2 h 4 min"); "" when unknown."""
    if start is None or end is None:
        return ""
    seconds = max(0, int((end - start).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# Deploys list ------------------------------------------------------------------------


def annotated_runs() -> QuerySet[DeployRun]:
    """Runs as the lists show them, newest first."""
    return DeployRun.objects.with_latest_attempt().order_by("-created_at", "-pk")


@dataclass(frozen=True)
class RunRow:
    """One deploy in a table, with its figures computed for display."""

    run: DeployRun
    duration: str

    @classmethod
    def of(cls, run: DeployRun, now: datetime) -> RunRow:
        end = run.finished_at or (now if run.started_at else None)
        return cls(run=run, duration=duration(run.started_at, end))


# The shared FilterSet's labels are derived from lookups ("Created at is less
# than"); the page names its filters in words.
FILTER_LABELS = {
    "environment": "Environment",
    "state": "State",
    "requester": "Requester",
    "ref": "Ref",
    "created_after": "Requested after (UTC)",
    "created_before": "Requested before (UTC)",
}


@require_GET
@role_required(Role.VIEWER)
def run_list(request: HttpRequest) -> HttpResponse:
    """Every deploy, newest first, filtered and paginated. htmx polls this URL with
    the page's own query string; for those requests only the table is rendered."""
    now = timezone.now()
    filterset = DeployRunFilterSet(request.GET, queryset=annotated_runs())
    for name, label in FILTER_LABELS.items():
        if name in filterset.form.fields:
            filterset.form.fields[name].label = label
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {
        "filter": filterset,
        "page_obj": page,
        "rows": [RunRow.of(run, now) for run in page.object_list],
        "can_deploy": has_role(request.user, Role.SRE),
    }
    is_htmx = request.headers.get("HX-Request") == "true"
    template = "deploys/_run_table.html" if is_htmx else "deploys/run_list.html"
    response = render(request, template, ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


# Trigger form ------------------------------------------------------------------------


class DeployForm(forms.Form):
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.order_by("name", "pk"),
        to_field_name="name",
        empty_label="Choose an environment…",
        error_messages={
            "required": "Choose the environment to deploy to.",
            "invalid_choice": "There is no environment of that name: choose one.",
        },
    )
    ref = forms.CharField(
        max_length=255,
        required=False,
        strip=True,
        help_text="Branch or tag; empty deploys the environment's default ref. Its "
        "commit now is recorded and deployed exactly.",
    )
    sha = forms.RegexField(
        regex=r"^[0-9a-f]{40}$",
        required=False,
        strip=True,
        label="Commit (optional)",
        help_text="Deploy exactly this commit of the ref (its full SHA), not the "
        "ref's newest.",
        error_messages={"invalid": "A full 40-character lowercase hexadecimal SHA."},
    )
    # Set by the confirmation step a production environment asks for.
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)
    change_ticket = forms.CharField(max_length=100, required=False, strip=True)
    # Generated when the form is drawn: submitting the same form twice gives the
    # same deploy, never two.
    idempotency_key = forms.CharField(max_length=200, widget=forms.HiddenInput)
    break_glass_reason = forms.CharField(
        max_length=500,
        required=False,
        strip=True,
        label="Break glass (admins)",
        help_text="Deploy during a freeze window, without the approvals in the "
        "control plane the environment needs, or while JIRA cannot check the change "
        "ticket: why (kept in the audit log).",
    )


def _preview_context(env: Environment | None) -> dict[str, Any]:
    if env is None:
        return {"env": None}
    now = timezone.now()
    chosen, pool = env.pick_runner()
    return {
        "env": env,
        "pool": pool,
        "chosen": chosen,
        "freeze": env.freeze_at(now),
    }


def _form_context(
    request: HttpRequest, form: DeployForm, env: Environment | None = None
) -> dict[str, Any]:
    if env is None:
        name = form["environment"].value()
        env = Environment.objects.filter(name=name).first() if name else None
    ctx = _preview_context(env)
    # The ref box is empty: the chosen environment's default ref is its placeholder.
    form.fields["ref"].widget.attrs["placeholder"] = (
        env.default_ref if env is not None else "the environment's default ref"
    )
    ctx.update(
        {
            "form": form,
            "is_admin": has_role(request.user, Role.ADMIN),
            "refusal": "",
            "unknown_environment": "",
        }
    )
    return ctx


def _needs_confirmation(env: Environment, data: dict[str, Any]) -> bool:
    """A production environment asks once more, naming what would happen, unless
    the request will be refused anyway (paused)."""
    return env.production and not env.paused and not data.get("confirmed")


def _filled_in(data: QueryDict) -> dict[str, str]:
    """The form's fields as submitted (not the confirmation itself), to draw the
    form again with them."""
    fields = (name for name in DeployForm.base_fields if name != "confirmed")
    return {name: data.get(name, "") for name in fields if name in data}


@require_http_methods(["GET", "POST"])
@role_required(Role.SRE)
def run_new(request: HttpRequest) -> HttpResponse:
    """Request a deploy: environment, ref and change ticket, through the same
    validation and safeguards as the API."""
    if request.method == "POST":
        if "back" in request.POST:
            # Back from the confirmation step: the form again, as it was filled in.
            back = DeployForm(initial=_filled_in(request.POST))
            return render(request, "deploys/run_new.html", _form_context(request, back))
        form = DeployForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            env: Environment = data["environment"]
            if _needs_confirmation(env, data):
                ctx = _form_context(request, form, env)
                ctx["ref"] = data["ref"] or env.default_ref
                return render(request, "deploys/run_confirm.html", ctx)
            try:
                result = request_deploy(
                    request.user,
                    env,
                    data["ref"],
                    data["change_ticket"],
                    data["idempotency_key"],
                    data["break_glass_reason"],
                    sha=data["sha"],
                )
            except DeployRequestError as exc:
                ctx = _form_context(request, form)
                if isinstance(exc, DeployRefused | RuleRefused):
                    ctx["refusal"] = exc.message
                    # A rule's facts: where to deploy the commit first.
                    ctx["refusal_rules"] = exc.extra.get("rules", [])
                elif exc.field in form.fields:
                    form.add_error(exc.field, exc.message)
                else:
                    form.add_error(None, exc.message)
                return render(request, "deploys/run_new.html", ctx, status=exc.status)
            run = result.run
            if result.created:
                messages.success(request, f"Deploy #{run.pk} of {run.ref} requested.")
            else:
                messages.info(request, f"This form already requested deploy #{run.pk}.")
            return redirect("deploys:run-detail", pk=run.pk)
        return render(
            request, "deploys/run_new.html", _form_context(request, form), status=400
        )
    # No default: the environment is chosen, or named by ``?environment=``.
    wanted = request.GET.get("environment", "")
    chosen = Environment.objects.filter(name=wanted).first() if wanted else None
    initial: dict[str, Any] = {"idempotency_key": uuid.uuid4().hex}
    if chosen is not None:
        initial["environment"] = chosen.name
        # Filled in by a link, e.g. a promotion refusal's "deploy it there first".
        initial.update({k: request.GET[k] for k in ("ref", "sha") if k in request.GET})
    form = DeployForm(initial=initial)
    ctx = _form_context(request, form, chosen)
    if wanted and chosen is None:
        ctx["unknown_environment"] = wanted
        return render(request, "deploys/run_new.html", ctx, status=404)
    return render(request, "deploys/run_new.html", ctx)


@require_GET
@role_required(Role.SRE)
def run_new_preview(request: HttpRequest) -> HttpResponse:
    """The trigger form's runner preview for ``?environment=``: htmx swaps it in
    when the environment changes (none chosen: an invitation to choose one)."""
    name = request.GET.get("environment", "")
    env = get_object_or_404(Environment, name=name) if name else None
    return render(request, "deploys/_preview.html", _preview_context(env))


@require_POST
@role_required(Role.SRE)
def environment_redeploy(request: HttpRequest, name: str) -> HttpResponse:
    """A new deploy of the environment's last succeeded ref, through the gates."""
    env = get_object_or_404(Environment, name=name)
    try:
        result = redeploy_last_good(
            request.user,
            env,
            idempotency_key=request.POST.get("idempotency_key", "").strip(),
            break_glass_reason=request.POST.get("break_glass_reason", ""),
        )
    except DeployRequestError as exc:
        messages.error(request, f"Redeploy refused: {exc.message}")
        back = _safe_back(request)
        if back:
            return redirect(back)
        return redirect("deploys:environment-detail", name=env.name)
    run = result.run
    messages.success(request, f"Deploy #{run.pk} of {run.ref} (last good) requested.")
    return redirect("deploys:run-detail", pk=run.pk)


def _safe_back(request: HttpRequest) -> str:
    back = request.POST.get("back", "")
    # Only paths on this site: never an open redirect.
    return back if back.startswith("/") and not back.startswith("//") else ""


# Environments ------------------------------------------------------------------------


def _pool_prefetch() -> Prefetch[Any]:
    return Prefetch(
        "pool_entries",
        queryset=EnvironmentRunner.objects.select_related("runner").order_by(
            "position", "pk"
        ),
    )


@dataclass(frozen=True)
class EnvironmentRow:
    env: Environment
    freeze: FreezeWindow | None
    chosen: Runner | None


@require_GET
@role_required(Role.VIEWER)
def environment_list(request: HttpRequest) -> HttpResponse:
    """Every environment: paused or frozen, its pool's health, active and queued."""
    now = timezone.now()
    envs = Environment.objects.prefetch_related(
        _pool_prefetch(), "freeze_windows"
    ).annotate(
        active_count=Count(
            "deploys", filter=Q(deploys__state__in=DeployRun.ACTIVE_STATES)
        ),
        queued_count=Count("deploys", filter=Q(deploys__state=DeployRun.State.QUEUED)),
    )
    rows = []
    for env in envs.order_by("name", "pk"):
        chosen, _ = env.pick_runner(pool=list(env.pool_entries.all()))
        rows.append(EnvironmentRow(env, env.freeze_at(now), chosen))
    return render(request, "deploys/environment_list.html", {"rows": rows})


@dataclass(frozen=True)
class WindowRow:
    window: FreezeWindow
    in_force: bool


def _environment_context(request: HttpRequest, env: Environment) -> dict[str, Any]:
    """``env`` comes with its freeze windows prefetched."""
    now = timezone.now()
    runs = annotated_runs().filter(environment=env)
    unfinished = list(
        runs.exclude(state__in=DeployRun.FINAL_STATES).order_by("created_at", "pk")
    )
    recent = list(runs.filter(state__in=DeployRun.FINAL_STATES)[:RECENT_DEPLOYS])
    last_good = (
        annotated_runs()
        .filter(environment=env, state=DeployRun.State.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )
    freeze = env.freeze_at(now)
    is_sre = has_role(request.user, Role.SRE)
    # Why the deploy buttons are off now ("" when they are on): a pause stops
    # everyone; a freeze leaves admins their break glass on the form.
    blocked = ""
    if env.paused:
        blocked = f"Deploys to {env.name} are paused"
    elif freeze is not None and not has_role(request.user, Role.ADMIN):
        blocked = f"{env.name} is frozen ({freeze.reason}); only an admin may deploy"
    return {
        "env": env,
        "pool": env.pick_runner()[1],
        "freeze": freeze,
        "frozen_until": env.frozen_until(now) if freeze else None,
        "last_good": last_good,
        "blocked": blocked,
        "windows": [WindowRow(w, w.covers(now)) for w in env.freeze_windows.all()],
        "active": [
            RunRow.of(r, now) for r in unfinished if r.state != DeployRun.State.QUEUED
        ],
        "queued": [
            RunRow.of(r, now) for r in unfinished if r.state == DeployRun.State.QUEUED
        ],
        "recent": [RunRow.of(r, now) for r in recent],
        # Called by the full page's template only, not by the live partial's polls.
        "history": partial(deploy_history, env),
        "can_redeploy": is_sre,
        "can_pause": is_sre,
        "redeploy_key": uuid.uuid4().hex,
        "now": now,
        "promotion_period": period_text(env.promotion_period_hours),
        "allowed_refs": ref_patterns(env.allowed_refs),
    }


@require_GET
@role_required(Role.VIEWER)
def environment_detail(request: HttpRequest, name: str) -> HttpResponse:
    """One environment: the pool with live health, safeguards, active, queued and
    recent deploys. htmx polls it; those requests get the live partial only."""
    env = get_object_or_404(
        Environment.objects.select_related("promote_from").prefetch_related(
            "freeze_windows"
        ),
        name=name,
    )
    ctx = _environment_context(request, env)
    is_htmx = request.headers.get("HX-Request") == "true"
    template = (
        "deploys/_environment_live.html"
        if is_htmx
        else "deploys/environment_detail.html"
    )
    response = render(request, template, ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


# Webhooks ----------------------------------------------------------------------------

WEBHOOK_FILTER_LABELS = {
    "event": "Event",
    "outcome": "Outcome",
    "received_after": "Received after (UTC)",
    "received_before": "Received before (UTC)",
}


@require_GET
@role_required(Role.SRE)
def webhook_list(request: HttpRequest) -> HttpResponse:
    """Every stored webhook delivery, newest first: what GitHub sent and what became
    of it (matched to a deploy or runner, unmatched, ignored and why, failed)."""
    deliveries = WebhookDelivery.objects.select_related("deploy_run").defer("payload")
    filterset = WebhookDeliveryFilterSet(request.GET, queryset=deliveries)
    for name, label in WEBHOOK_FILTER_LABELS.items():
        filterset.form.fields[name].label = label
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = dict(
        WebhookDelivery.objects.values_list("outcome").annotate(n=Count("pk"))
    )
    ctx = {
        "filter": filterset,
        "page_obj": page,
        "deliveries": page.object_list,
        "counts": [(o.value, counts.get(o.value, 0)) for o in WebhookDelivery.Outcome],
        "retention_days": settings.WEBHOOK_RETENTION_DAYS,
    }
    return render(request, "deploys/webhook_list.html", ctx)
