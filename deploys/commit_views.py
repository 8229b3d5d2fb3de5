"""Pages about exact commits: what every environment runs now, and rolling one back
to the commit it ran before (with a confirmation step; no script needed)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from controlplane.permissions import role_required
from controlplane.roles import Role
from deploys.commits import deployed_now, rollback_target
from deploys.models import Environment
from deploys.redeploy import rollback
from deploys.request_errors import DeployRequestError


@require_GET
@role_required(Role.VIEWER)
def deployed_now_page(request: HttpRequest) -> HttpResponse:
    """Per environment: the commit it runs, who deployed it when, with which ticket
    and runner, and GitHub's compare view against the deploy before."""
    return render(request, "deploys/deployed_now.html", {"rows": deployed_now()})


@require_http_methods(["GET", "POST"])
@role_required(Role.SRE)
def environment_rollback(request: HttpRequest, name: str) -> HttpResponse:
    """GET: what a rollback would deploy, to confirm. POST: request it (through the
    environment's gates, audited with both SHAs)."""
    env = get_object_or_404(Environment, name=name)
    if request.method == "POST":
        try:
            result = rollback(
                request.user,
                env,
                idempotency_key=request.POST.get("idempotency_key", "").strip(),
                break_glass_reason=request.POST.get("break_glass_reason", ""),
            )
        except DeployRequestError as exc:
            messages.error(request, f"Rollback refused: {exc.message}")
            return redirect("deploys:environment-detail", name=env.name)
        run = result.run
        messages.success(
            request,
            f"Deploy #{run.pk} rolls {env.name} back to {run.sha[:12]} ({run.ref}).",
        )
        return redirect("deploys:run-detail", pk=run.pk)
    found = rollback_target(env)
    ctx: dict[str, Any] = {"env": env, "current": None, "target": None}
    if found is not None:
        ctx["current"], ctx["target"] = found
    ctx["rollback_key"] = uuid.uuid4().hex
    return render(request, "deploys/rollback_confirm.html", ctx)
