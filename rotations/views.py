"""The secrets pages under ``/secrets/``: schedules by urgency with a timeline of
what falls due, a schedule's detail with its rotation history, the rotate form
(admins), the audit against GitHub (SREs) and the import of schedules (admins)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from controlplane import runbooks
from controlplane.permissions import role_required
from controlplane.roles import Role, has_role
from rotations import domain, timeline
from rotations.models import SecretRotationSchedule, Status

TIMELINE_DAYS = 180
MAX_HISTORY = 100


class RotateForm(forms.Form):
    """A new value (never shown again, not even after an error) or a generated one."""

    value = forms.CharField(
        required=False,
        strip=False,
        max_length=48 * 1024,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: sealed for GitHub in this request, never stored.",
    )
    generate = forms.BooleanField(
        required=False,
        label="Generate a strong random value instead",
        help_text="256 random bits; it is not shown, so read it from where the "
        "workflow uses it.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("value")) == bool(data.get("generate")):
            raise forms.ValidationError("Type a value or choose to generate one.")
        return data


def _timeline(
    schedules: list[SecretRotationSchedule], now: datetime
) -> list[dict[str, Any]]:
    """Schedules falling due within the timeline window, placed on a 0-100 % axis."""
    end = now + timedelta(days=TIMELINE_DAYS)
    items = []
    for schedule in schedules:
        if schedule.next_due is None or schedule.next_due > end:
            continue
        offset = max(0.0, (schedule.next_due - now).total_seconds())
        items.append(
            {
                "schedule": schedule,
                "percent": round(100 * offset / (end - now).total_seconds(), 2),
                "overdue": schedule.next_due <= now,
            }
        )
    return sorted(items, key=lambda item: item["schedule"].next_due)


def runbook_for_status(status: str) -> str:
    """The slug of the runbook for a secret status, or "" for statuses that need none."""
    page = runbooks.for_reason("secret", status)
    return page.slug if page is not None else ""


@require_GET
@role_required(Role.VIEWER)
def secret_list(request: HttpRequest) -> HttpResponse:
    """Every schedule, most urgent first (overdue, missing, due soon)."""
    now = timezone.now()
    schedules = list(
        SecretRotationSchedule.objects.by_urgency(now)
        .select_related("environment")
        .prefetch_related("required_by")
    )
    counts = {value: 0 for value in Status.values}
    for schedule in schedules:
        counts[schedule.status] += 1  # type: ignore[attr-defined]
        schedule.runbook = runbook_for_status(schedule.status)  # type: ignore[attr-defined]
    ctx = {
        "schedules": schedules,
        "counts": [(Status(v).label, v, n) for v, n in counts.items()],
        "timeline": _timeline(schedules, now),
        "chart": timeline.build(schedules, now, TIMELINE_DAYS),
        "timeline_days": TIMELINE_DAYS,
        "now": now,
        "can_audit": has_role(request.user, Role.SRE),
        "is_admin": has_role(request.user, Role.ADMIN),
    }
    return render(request, "rotations/list.html", ctx)


def _detail_context(
    request: HttpRequest,
    schedule: SecretRotationSchedule,
    form: RotateForm | None = None,
) -> dict[str, Any]:
    now = timezone.now()
    is_admin = has_role(request.user, Role.ADMIN)
    status = schedule.status_at(now)
    return {
        "schedule": schedule,
        "status": status,
        "runbook": runbook_for_status(status),
        "days_until_due": schedule.days_until_due(now),
        "rotations": schedule.rotations.order_by("-rotated_at", "-pk")[:MAX_HISTORY],
        "required_by": list(schedule.required_by.order_by("name")),
        "is_admin": is_admin,
        "form": (form or RotateForm()) if is_admin else None,
    }


@require_GET
@role_required(Role.VIEWER)
def secret_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One schedule: status, due date, who requires it, its rotation history."""
    schedule = get_object_or_404(
        SecretRotationSchedule.objects.select_related("environment"), pk=pk
    )
    return render(request, "rotations/detail.html", _detail_context(request, schedule))


@sensitive_post_parameters("value")
@sensitive_variables("form", "value")
@require_POST
@role_required(Role.ADMIN)
def secret_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    """Rotate the secret in GitHub (admins, audited). The value is sealed inside
    this request; a refusal is shown and nothing is recorded as rotated."""
    # Error reports (Django's technical 500 page too) must not show the value.
    domain.protect_request(request)
    schedule = get_object_or_404(
        SecretRotationSchedule.objects.select_related("environment"), pk=pk
    )
    form = RotateForm(request.POST)
    if not form.is_valid():
        ctx = _detail_context(request, schedule, form)
        return render(request, "rotations/detail.html", ctx, status=400)
    value = form.cleaned_data["value"] or domain.generate_value()
    try:
        rotation = domain.rotate(schedule, value, request.user)
    except domain.RotationRefused as exc:
        # A fresh, empty form: the refused value is not sent back to the browser.
        ctx = _detail_context(request, schedule)
        ctx["rotate_error"] = str(exc)
        return render(request, "rotations/detail.html", ctx, status=502)
    messages.success(
        request,
        f"{schedule.name} rotated in GitHub (sealed with key {rotation.key_id}).",
    )
    return redirect("rotations:secret-detail", pk=schedule.pk)


@require_POST
@role_required(Role.SRE)
def secret_audit(request: HttpRequest) -> HttpResponse:
    """Check every schedule against GitHub now (audited)."""
    report = domain.audit_schedules(actor=request.user)
    text = f"Checked {report.checked} secret{'s' if report.checked != 1 else ''}"
    if report.missing:
        text += "; missing: " + ", ".join(report.missing)
    if report.external:
        text += "; changed outside the control plane: " + ", ".join(report.external)
    level = messages.WARNING if report.missing or report.errors else messages.SUCCESS
    messages.add_message(request, level, text + ".")
    for error in report.errors:
        messages.error(request, f"Could not list {error}")
    return redirect("rotations:secret-list")


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def secret_import(request: HttpRequest) -> HttpResponse:
    """Propose schedules for secrets GitHub has; the admin ticks and confirms."""
    if request.method == "POST":
        keys = request.POST.getlist("key")
        created = domain.import_schedules(request.user, keys)
        messages.success(
            request,
            f"Created {len(created)} schedule{'s' if len(created) != 1 else ''} "
            "with the default intervals.",
        )
        return redirect("rotations:secret-list")
    proposals, errors = domain.propose_schedules()
    ctx = {"proposals": proposals, "errors": errors}
    return render(request, "rotations/import.html", ctx)
