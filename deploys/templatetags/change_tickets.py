"""``{% change_ticket run break_glass %}``: the deploy page's change-ticket row,
linked to JIRA when JIRA_URL is set, flagged when an admin broke glass past a JIRA
that could not check it (``break_glass``: the run's event, which the page has
already read), with where the outcome comment on the ticket stands;
``{% jira_statuses env %}``: the statuses a ticket must be in for a deploy to
``env`` ("" without JIRA)."""

from __future__ import annotations

from typing import Any

from django import template

from deploys import jira_conf
from deploys.change_tickets import allowed_statuses, browse_url
from deploys.models import DeployEvent, DeployRun, Environment, TicketUpdate

register = template.Library()


@register.inclusion_tag("deploys/_change_ticket.html")
def change_ticket(
    run: DeployRun, break_glass: DeployEvent | None = None
) -> dict[str, Any]:
    update = TicketUpdate.objects.filter(run=run).first() if run.change_ticket else None
    glass = (break_glass.detail or {}) if break_glass is not None else {}
    return {
        "run": run,
        "url": browse_url(run.change_ticket),
        "update": update,
        "unverified": glass.get("jira_unverified", ""),
    }


@register.simple_tag
def jira_statuses(env: Environment) -> str:
    return " or ".join(allowed_statuses(env)) if jira_conf.enabled() else ""
