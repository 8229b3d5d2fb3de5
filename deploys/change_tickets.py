"""A deploy's change ticket: its characters, its JIRA check at request time, its link.

The "JIRA-first" rule: every change is traceable to a ticket such as ``INFRA-473``.

- **Characters**, always: the ticket is sent to GitHub (the dispatch input ``ticket``,
  shown in the run's name), so only letters, digits and ``. _ : # / -`` pass.
- **JIRA**, with ``JIRA_URL`` set: a ticket given must be a JIRA issue key, exist,
  and be in one of the environment's allowed statuses (``jira_allowed_statuses``,
  else ``JIRA_ALLOWED_STATUSES``); otherwise the request is refused naming the
  ticket and its status. JIRA unreachable, slow, failing (5xx) or refusing the
  control plane's credentials refuses the request as unavailable (503), unless an
  admin breaks glass with a reason (``request_ticket``): only the existence check
  blocks a deploy, never a later comment (``ticket_outbox``).
- Without ``JIRA_URL``, only the environment's pattern applies (``request_ticket``).
"""

from __future__ import annotations

import re

from deploys import jira_conf, jira_gateway
from deploys.models import Environment
from deploys.models.change_tickets import parse_statuses

TICKET_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:#/-]*$")
# A JIRA issue key: the project key (upper case), a dash, the issue number.
JIRA_KEY = re.compile(r"^[A-Z][A-Z0-9_]+-[1-9][0-9]*$")


class TicketRefused(Exception):
    """The ticket does not allow this deploy (missing, wrong status, malformed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TicketUnverifiable(TicketRefused):
    """JIRA could not say whether the ticket allows the deploy; ``cause`` is what
    JIRA (or the network) answered, which an admin's break glass records."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def character_error(ticket: str) -> str:
    """What is wrong with the ticket's characters ("" when nothing is)."""
    if not ticket or TICKET_CHARS.match(ticket):
        return ""
    return (
        "letters, digits and . _ : # / - only, starting with a letter or digit "
        "(the ticket is shown in the GitHub run's name)"
    )


def for_github(ticket: str) -> str:
    """The ticket as the dispatch input: checked again, since older deploys were
    requested before the characters were ("" when it does not pass)."""
    return ticket if ticket and not character_error(ticket) else ""


def browse_url(ticket: str) -> str:
    """The ticket's page in JIRA ("" without JIRA, or for a ticket that is not an
    issue key)."""
    if not ticket or not jira_conf.enabled() or not JIRA_KEY.match(ticket):
        return ""
    return f"{jira_conf.url()}/browse/{ticket}"


def allowed_statuses(env: Environment) -> list[str]:
    return parse_statuses(env.jira_allowed_statuses) or jira_conf.allowed_statuses()


def check(env: Environment, ticket: str) -> None:
    """Refuse the ticket unless JIRA says it allows a deploy to ``env`` now
    (:class:`TicketRefused`, or :class:`TicketUnverifiable` when JIRA cannot
    answer); nothing to check without JIRA or without a ticket."""
    if not ticket or not jira_conf.enabled():
        return
    if not JIRA_KEY.match(ticket):
        raise TicketRefused(
            f"{ticket} is not a JIRA issue key: the project key in capitals, a dash "
            "and the issue number, e.g. INFRA-473"
        )
    try:
        found = jira_gateway.get(ticket)
    except jira_gateway.JiraError as exc:
        if exc.unavailable:
            raise TicketUnverifiable(
                f"cannot check change ticket {ticket}: {exc.message}; nothing was "
                "created, retry when JIRA answers",
                exc.message,
            ) from None
        raise TicketRefused(exc.message) from None
    allowed = allowed_statuses(env)
    if found.status.casefold() not in {status.casefold() for status in allowed}:
        raise TicketRefused(
            f"change ticket {ticket} is {found.status}; a deploy to {env.name} needs "
            f"it in {' or '.join(allowed)}"
        )
