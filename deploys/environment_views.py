"""Pausing and resuming an environment from its page (SREs, with a reason,
audited as ``environment.pause`` and ``environment.resume``)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from controlplane.permissions import role_required
from controlplane.roles import Role
from deploys.models import Environment
from deploys.pausing import PauseError, pause, resume


@require_POST
@role_required(Role.SRE)
def environment_pause(request: HttpRequest, name: str) -> HttpResponse:
    """Pause the environment's deploys: new requests are refused with the reason,
    queued ones wait until it is resumed."""
    env = get_object_or_404(Environment, name=name)
    try:
        pause(request.user, env, request.POST.get("reason", ""))
    except PauseError as exc:
        messages.error(request, f"Not paused: {exc.message}.")
    else:
        messages.success(request, f"Deploys to {env.name} are paused.")
    return redirect("deploys:environment-detail", name=env.name)


@require_POST
@role_required(Role.SRE)
def environment_resume(request: HttpRequest, name: str) -> HttpResponse:
    """Resume the environment's deploys; its queued deploys go ahead in order."""
    env = get_object_or_404(Environment, name=name)
    try:
        resume(request.user, env, request.POST.get("note", ""))
    except PauseError as exc:
        messages.warning(request, f"{exc.message}.")
    else:
        messages.success(request, f"Deploys to {env.name} are resumed.")
    return redirect("deploys:environment-detail", name=env.name)
