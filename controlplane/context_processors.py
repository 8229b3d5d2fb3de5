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

# (label, URL name) of each section, in display order. The apps add theirs with
# ``register_section`` from their ``ready()``; these two are the floor's own.
NAVIGATION: list[tuple[str, str]] = [
    ("Runbooks", "runbooks:index"),
    ("Audit", "audit-list"),
    ("Admin", "admin:index"),
]
_POSITIONS = {"runbooks:index": 80, "audit-list": 90, "admin:index": 95}
# Sections only some roles may open; the others are for every viewer.
NAVIGATION_ROLES: dict[str, Role] = {"admin:index": Role.ADMIN}


def register_section(
    label: str, url_name: str, *, position: int, role: Role = Role.NONE
) -> None:
    """Show ``url_name`` in the navigation, ordered by ``position`` (the floor's
    own sections sit at 80 and up), to users with at least ``role``."""
    _POSITIONS[url_name] = position
    # Registering again replaces the section rather than showing it twice.
    NAVIGATION[:] = [s for s in NAVIGATION if s[1] != url_name] + [(label, url_name)]
    NAVIGATION.sort(key=lambda section: _POSITIONS[section[1]])
    if role > Role.NONE:
        NAVIGATION_ROLES[url_name] = role


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
