"""Template context every page gets: the navigation, the user's role and the
background jobs that have stopped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from controlplane.roles import Role, role_of

NAVIGATION = [
    ("Fleet", "runners:fleet"),
    ("Deploys", "deploys:run-list"),
    ("Secrets", "rotations:secret-list"),
    ("Webhooks", "deploys:webhook-list"),
    ("Runbooks", "runbooks:index"),
    ("Audit", "audit-list"),
]
# Sections only some roles may open; the others are for every viewer.
NAVIGATION_ROLES = {"deploys:webhook-list": Role.SRE}


@dataclass(frozen=True)
class NavEntry:
    label: str
    url: str
    current: bool


def navigation_entries(path: str, role: Role = Role.ADMIN) -> list[NavEntry]:
    """The sections that exist and ``role`` may open, in order; a section whose URL
    name does not resolve yet is left out, so the navigation grows as sections are
    added. The current section is the one whose URL is the longest prefix of
    ``path``."""
    resolved: list[tuple[str, str]] = []
    for label, name in NAVIGATION:
        if role < NAVIGATION_ROLES.get(name, Role.NONE):
            continue
        try:
            resolved.append((label, reverse(name)))
        except NoReverseMatch:
            continue
    matches = [url for _, url in resolved if url != "/" and path.startswith(url)]
    current = max(matches, key=len, default=None)
    return [NavEntry(label, url, url == current) for label, url in resolved]


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    role = role_of(user) if user is not None else Role.NONE
    return {
        "navigation": navigation_entries(request.path, role),
        "user_role": role.label if user is not None else "",
    }


def background_jobs(request: HttpRequest) -> dict[str, Any]:
    """``stale_jobs`` for the banner in base.html, for signed-in users only.

    Lazy: its one query runs only when a template shows it, so htmx partials and
    pages that do not extend base.html pay nothing.
    """
    from controlplane.liveness import stale_jobs

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"stale_jobs": []}
    return {"stale_jobs": SimpleLazyObject(lambda: stale_jobs(timezone.now()))}
