"""The one module that talks to JIRA, through the ``jira`` library.

It owns the client's timeouts (``JIRA_TIMEOUT``, connect and read), turns off the
library's own retries (they sleep for tens of seconds inside a web request; the
outbox in ``deploys.ticket_outbox`` retries with backoff instead) and translates
every failure into :class:`JiraError`, whose message is safe to show, log and store.

The library's own error text is never used: ``str(JIRAError)`` prints the request's
headers, where the credentials are. Functions holding the token are marked
``sensitive_variables`` so Django's error pages hide their locals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from django.views.decorators.debug import sensitive_variables
from jira import JIRA, JIRAError

from deploys import jira_conf

# What each status means for the control plane (4xx other than these: the ticket).
AUTH_STATUSES = {401: "rejected the control plane's credentials", 403: "refused access"}


class JiraError(Exception):
    """A JIRA call that failed. ``message`` names the status or the kind of failure
    only; ``unavailable`` means JIRA could not answer (down, 5xx, slow, our
    credentials), as opposed to an answer about the ticket (404)."""

    def __init__(self, message: str, *, unavailable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.unavailable = unavailable


@dataclass(frozen=True)
class Ticket:
    """A JIRA issue as the control plane needs it."""

    key: str
    status: str


@sensitive_variables("secret", "credentials")
def client() -> JIRA:
    """A client for ``JIRA_URL``: basic auth with JIRA_USER + JIRA_TOKEN (Cloud),
    a bearer token with JIRA_TOKEN alone (Data Center), anonymous without a token.
    Building it sends nothing."""
    secret = jira_conf.token()
    credentials: dict[str, Any] = {}
    if secret and jira_conf.user():
        credentials["basic_auth"] = (jira_conf.user(), secret)
    elif secret:
        credentials["token_auth"] = secret
    wait = jira_conf.timeout()
    return JIRA(
        server=jira_conf.url(),
        options={"check_update": False},
        timeout=(wait, wait),
        max_retries=0,
        get_server_info=False,
        **credentials,
    )


@contextmanager
def _translated(key: str) -> Iterator[None]:
    """Every failure of a call about ticket ``key`` as a :class:`JiraError`."""
    try:
        yield
    except JIRAError as exc:
        status = exc.status_code
        if status is None:
            raise JiraError(
                f"JIRA refused the request about {key}", unavailable=False
            ) from None
        if status == 404:
            raise JiraError(
                f"{key} does not exist in JIRA (or the control plane's JIRA account "
                "cannot see it)",
                unavailable=False,
            ) from None
        if status in AUTH_STATUSES:
            raise JiraError(
                f"JIRA {AUTH_STATUSES[status]} (HTTP {status}): an admin must check "
                "JIRA_USER and JIRA_TOKEN",
                unavailable=True,
            ) from None
        raise JiraError(
            f"JIRA answered HTTP {status} about {key}",
            unavailable=status >= 500 or status == 429,
        ) from None
    except requests.Timeout:
        raise JiraError(
            f"JIRA did not answer within {jira_conf.timeout():g} s",
            unavailable=True,
        ) from None
    except requests.RequestException as exc:
        raise JiraError(
            f"cannot reach JIRA ({type(exc).__name__})", unavailable=True
        ) from None
    except (ValueError, KeyError, AttributeError):
        # An answer that is not JIRA's JSON: a proxy's page, a wrong JIRA_URL.
        raise JiraError(
            f"JIRA's answer about {key} was not JIRA's JSON (check JIRA_URL)",
            unavailable=True,
        ) from None


def get(key: str) -> Ticket:
    """The issue ``key`` and its current status."""
    with _translated(key):
        issue = client().issue(key, fields="status")
        return Ticket(str(issue.key), str(issue.fields.status.name))


def comment(key: str, body: str) -> None:
    """Add ``body`` as a comment on ``key``."""
    with _translated(key):
        client().add_comment(key, body)


def transition(key: str, name: str) -> None:
    """Move ``key`` through the transition called ``name`` (case-insensitive)."""
    with _translated(key):
        jira = client()
        found = jira.find_transitionid_by_name(key, name)
        if found is None:
            available = ", ".join(str(t.get("name", "")) for t in jira.transitions(key))
            raise JiraError(
                f"{key} has no transition named {name!r} now (available: "
                f"{available or 'none'})",
                unavailable=False,
            )
        jira.transition_issue(key, str(found))
