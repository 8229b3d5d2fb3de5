"""``{% gate_reviews env %}``: the environment page's section on runs started outside
the control plane and what it answered GitHub about them as their deployment
protection rule (one include line, no view changes)."""

from __future__ import annotations

from typing import Any

from django import template

from controlplane.runbooks import runbook_url
from deploys.models import Environment, GateReview

register = template.Library()

SHOWN = 10


@register.inclusion_tag("deploys/_gate_reviews.html")
def gate_reviews(env: Environment) -> dict[str, Any]:
    reviews = list(
        GateReview.objects.filter(environment=env, deploy_run__isnull=True).order_by(
            "-requested_at", "-pk"
        )[:SHOWN]
    )
    unanswered = GateReview.objects.filter(
        environment=env, answered_at__isnull=True
    ).count()
    return {
        "env": env,
        "reviews": reviews,
        "unanswered": unanswered,
        "runbook": runbook_url("deploy-protection-rule"),
    }
