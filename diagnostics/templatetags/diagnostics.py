"""``{% diagnostics_panel runner %}``: the runner page's diagnostics section, so the
runner page needs one include line and no view changes."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from controlplane.roles import Role, has_role
from diagnostics.summary import summarize
from runners.models import Runner

register = template.Library()


@register.inclusion_tag("diagnostics/panel.html", takes_context=True)
def diagnostics_panel(context: template.Context, runner: Runner) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    return {
        "runner": runner,
        "summary": summarize(runner, timezone.now()),
        "can_run": user is not None and has_role(user, Role.SRE),
        "csrf_token": context.get("csrf_token"),
    }
