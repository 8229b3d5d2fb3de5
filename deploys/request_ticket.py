"""A deploy request's change ticket, and an admin's break glass past a JIRA that
cannot answer.

- **Fields** (before the idempotency key is reserved): at most ``TICKET_MAX``
  characters, and only those GitHub may see (``change_tickets.character_error``).
- **Safeguards**: the environment's pattern, then JIRA (``change_tickets.check``).
- **JIRA cannot answer** (unreachable, slow, 5xx, credentials refused): the request
  is refused as unavailable, saying an admin may break glass; an admin's request
  with a break-glass reason goes on with the ticket unchecked, which
  ``BreakGlass.jira_unverified`` records on the timeline and in the audit log. An
  incident that takes JIRA down must not stop the deploy that fixes it.
- **JIRA refuses the ticket** (missing, wrong status, not an issue key): refused,
  break glass or not: JIRA answered, and its answer is the change process's word.
  The pattern and the characters are never broken either.

``triggers`` turns the refusals (``TicketRefused``, ``TicketUnverifiable``) into the
request's 400 and 503.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

from controlplane.roles import Role, has_role
from deploys import change_tickets
from deploys.change_tickets import TicketRefused, TicketUnverifiable
from deploys.models import Environment

TICKET_MAX = 100
GLASS_HINT = ", or an admin may break glass with a reason to deploy without the check"
NO_GLASS = (
    "; break glass goes past JIRA only when JIRA cannot answer, never past a ticket "
    "JIRA refuses"
)


def field_error(ticket: str) -> str:
    """What is wrong with the stripped ticket as a field ("" when nothing is)."""
    if len(ticket) > TICKET_MAX:
        return f"at most {TICKET_MAX} characters"
    return change_tickets.character_error(ticket)


def check(
    user: User | AnonymousUser, env: Environment, ticket: str, break_glass_reason: str
) -> str:
    """What JIRA answered when an admin's break glass went past it unchecked (""
    when the ticket was checked, or needs no check); a ``TicketRefused`` when the
    pattern or JIRA refuses the ticket, a ``TicketUnverifiable`` when JIRA cannot
    answer and nobody may break glass past it."""
    if not env.ticket_matches(ticket):
        raise TicketRefused(
            f"{env.name} needs a change ticket matching {env.change_ticket_pattern}"
        )
    glass = bool(break_glass_reason.strip())
    try:
        change_tickets.check(env, ticket)
    except TicketUnverifiable as exc:
        if glass and has_role(user, Role.ADMIN):
            return exc.cause
        raise TicketUnverifiable(exc.message + GLASS_HINT, exc.cause) from None
    except TicketRefused as exc:
        raise TicketRefused(exc.message + (NO_GLASS if glass else "")) from None
    return ""
