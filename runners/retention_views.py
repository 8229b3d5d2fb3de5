"""The stale runners page (``/retention/``): runners GitHub has reported offline for
long, proposed for removal, and the SRE's remove button (``runners.retention``
does the work)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from controlplane.permissions import role_required
from controlplane.roles import Role, has_role
from runners import retention
from runners.models import Runner
from runners.retention_conf import GITHUB_OFFLINE_REMOVAL, stale_after


@require_GET
@role_required(Role.VIEWER)
def stale_list(request: HttpRequest) -> HttpResponse:
    """Every runner proposed for removal, why, and when GitHub removes it."""
    now = timezone.now()
    stale = retention.stale_runners(now)
    ctx = {
        "stale": stale,
        "removable": sum(item.removable for item in stale),
        "stale_after_days": stale_after().days,
        "github_days": GITHUB_OFFLINE_REMOVAL.days,
        "can_remove": has_role(request.user, Role.SRE),
        "now": now,
        # Removals GitHub makes within a day show in red.
        "within_a_day": now + timedelta(days=1),
    }
    return render(request, "runners/stale.html", ctx)


@require_POST
@role_required(Role.SRE)
def remove(request: HttpRequest, name: str) -> HttpResponse:
    """Remove one stale runner from GitHub and the registry (audited)."""
    runner = get_object_or_404(Runner, name=name)
    try:
        retention.remove(runner, request.user, timezone.now())
    except (retention.RemovalRefused, retention.RemovalFailed) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"{runner.name} is removed from GitHub; its history stays on its page.",
        )
    return redirect("retention:stale")
