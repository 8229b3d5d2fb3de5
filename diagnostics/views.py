"""The runner page's diagnostics actions (POST, SRE role) and the full report page."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.permissions import role_required
from controlplane.roles import Role
from diagnostics.domain import Refused, request_run
from diagnostics.models import HostRun
from runners.models import Runner


def _request(request: HttpRequest, name: str, kind: str) -> HttpResponse:
    runner = get_object_or_404(Runner, name=name)
    try:
        requested = request_run(runner, kind, request.user)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        what = HostRun.Kind(kind).label.lower()
        gave_way = (
            " (the canary job in flight there was cancelled for it)"
            if requested.cancelled_canary
            else ""
        )
        messages.success(
            request,
            f"{what} dispatched on {runner.name}{gave_way}: the result appears below.",
        )
    return redirect("runners:detail", name=runner.name)


@require_POST
@role_required(Role.SRE)
def run(request: HttpRequest, name: str) -> HttpResponse:
    """Dispatch the diagnostics workflow pinned to the runner (audited)."""
    return _request(request, name, HostRun.Kind.DIAGNOSTICS)


@require_POST
@role_required(Role.SRE)
def install_agent(request: HttpRequest, name: str) -> HttpResponse:
    """Dispatch the agent-install workflow pinned to the runner (audited)."""
    return _request(request, name, HostRun.Kind.AGENT_INSTALL)


@role_required(Role.VIEWER)
def panel(request: HttpRequest, name: str) -> HttpResponse:
    """The runner page's diagnostics panel alone: what htmx polls while a run is in
    flight, so the result appears without a reload."""
    runner = get_object_or_404(Runner, name=name)
    return render(request, "diagnostics/runner_section.html", {"runner": runner})


@role_required(Role.VIEWER)
def report(request: HttpRequest, name: str, token: str) -> HttpResponse:
    """One diagnostics run in full: its state, and its report if it sent one."""
    host_run = get_object_or_404(
        HostRun.objects.select_related("runner"), runner__name=name, token=token
    )
    return render(
        request,
        "diagnostics/report.html",
        {"runner": host_run.runner, "run": host_run, "report": host_run.report},
    )
