"""``{% change_ticket run %}``: the deploy page's change-ticket row, linked to JIRA
when JIRA_URL is set, with where the outcome comment on the ticket stands;
``{% jira_statuses env %}``: the statuses a ticket must be in for a deploy to
``env`` ("" without JIRA)."""

from __future__ import annotations

from typing import Any

from django import template

from deploys import jira_conf
from deploys.change_tickets import allowed_statuses, browse_url
from deploys.models import DeployRun, Environment, TicketUpdate

register = template.Library()


@register.inclusion_tag("deploys/_change_ticket.html")
def change_ticket(run: DeployRun) -> dict[str, Any]:
    update = TicketUpdate.objects.filter(run=run).first() if run.change_ticket else None
    return {
        "run": run,
        "url": browse_url(run.change_ticket),
        "update": update,
    }


@register.simple_tag
def jira_statuses(env: Environment) -> str:
    return " or ".join(allowed_statuses(env)) if jira_conf.enabled() else ""
