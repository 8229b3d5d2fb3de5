"""Every URL route, requested (GET) as every persona, answers with the status the
role matrix below says.

Adding a route? Add one line to ``ROLE_MATRIX``: the route as the resolver spells it
(regex routes from DRF routers are normalised: ``^``/``$`` dropped, named groups
written ``<name>``) and the expected GET status for anonymous, outsider (signed in,
no role), viewer, sre and admin. ``ANY`` means "whatever it is, not a server error".
Routes ending in ``*`` match every route with that prefix (used for the Django admin).
Path parameters are filled with ``0``, so detail routes usually answer 404 to those
allowed to ask and 401/403 to the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import logged_in

ANY = None


class Expect(NamedTuple):
    anonymous: int | None
    outsider: int | None
    viewer: int | None
    sre: int | None
    admin: int | None


HTML_VIEWER = Expect(302, 403, 200, 200, 200)
API_VIEWER = Expect(401, 403, 200, 200, 200)
OPEN = Expect(200, 200, 200, 200, 200)
POST_ONLY = Expect(405, 405, 405, 405, 405)

ROLE_MATRIX: dict[str, Expect] = {
    # Project pages
    "": HTML_VIEWER,
    "audit/": HTML_VIEWER,
    "accounts/login/": OPEN,
    "accounts/logout/": Expect(302, 405, 405, 405, 405),
    "accounts/password_change/": Expect(302, 200, 200, 200, 200),
    "accounts/password_change/done/": Expect(302, 200, 200, 200, 200),
    # Operations endpoints (scraped without a login)
    "healthz": OPEN,
    "readyz": OPEN,
    "metrics": OPEN,
    # Machine-to-machine endpoints: POST with their own authentication
    "github/webhook": POST_ONLY,
    "heartbeat": POST_ONLY,
    # Prometheus service discovery: its own bearer token, whatever the session;
    # off (403) until a token is configured, as here.
    "sd/exporters": Expect(403, 403, 403, 403, 403),
    # REST API
    "api/schema/": API_VIEWER,
    "api/docs/": Expect(302, 403, 200, 200, 200),
    "api/v1/auth/whoami": Expect(401, 200, 200, 200, 200),
    "api/v1/audit-events/": API_VIEWER,
    "api/v1/audit-events/<pk>/": Expect(401, 403, 404, 404, 404),
    # Runner fleet (runners/urls.py, runners/api.py)
    "fleet/": HTML_VIEWER,
    "fleet/<str:name>/": Expect(302, 403, 404, 404, 404),
    "fleet/<str:name>/drain/": Expect(302, 405, 405, 405, 405),
    "fleet/<str:name>/undrain/": Expect(302, 405, 405, 405, 405),
    "fleet/<str:name>/trust/": Expect(302, 405, 405, 405, 405),
    "fleet/<str:name>/untrust/": Expect(302, 405, 405, 405, 405),
    "api/v1/runners/": API_VIEWER,
    "api/v1/runners/<name>/": Expect(401, 403, 404, 404, 404),
    "api/v1/runners/<name>/drain/": Expect(401, 403, 403, 405, 405),
    "api/v1/runners/<name>/undrain/": Expect(401, 403, 403, 405, 405),
    "api/v1/runners/<name>/trust/": Expect(401, 403, 403, 405, 405),
    "api/v1/runners/<name>/untrust/": Expect(401, 403, 403, 405, 405),
    "api/v1/runners/<name>/rotate-token/": Expect(401, 403, 403, 403, 405),
    "api/v1/runners/<name>/samples/": Expect(401, 403, 404, 404, 404),
    "api/v1/runners/<name>/events/": Expect(401, 403, 404, 404, 404),
    # Stale runners proposed for removal (runners/retention_urls.py, retention_api.py)
    "retention/": HTML_VIEWER,
    "retention/<str:name>/remove/": Expect(302, 405, 405, 405, 405),
    "api/v1/stale-runners/": API_VIEWER,
    "api/v1/stale-runners/<name>/remove/": Expect(401, 403, 403, 405, 405),
    # Diagnostics without SSH (diagnostics/urls.py, diagnostics/api.py, /diagnostics)
    "diagnostics": POST_ONLY,
    "fleet/<str:name>/diagnostics/run/": Expect(302, 405, 405, 405, 405),
    "fleet/<str:name>/diagnostics/install-agent/": Expect(302, 405, 405, 405, 405),
    "fleet/<str:name>/diagnostics/panel/": Expect(302, 403, 404, 404, 404),
    "fleet/<str:name>/diagnostics/<str:token>/": Expect(302, 403, 404, 404, 404),
    "api/v1/runner-diagnostics/<name>/": Expect(401, 403, 404, 404, 404),
    "api/v1/runner-diagnostics/<name>/run/": Expect(401, 403, 403, 405, 405),
    "api/v1/runner-diagnostics/<name>/install-agent/": Expect(401, 403, 403, 405, 405),
    # Inventory drift (inventory/urls.py, inventory/api.py); loading is for admins
    "inventory/": HTML_VIEWER,
    "api/v1/inventory/": API_VIEWER,
    # Deploys (deploys/api.py)
    "api/v1/environments/": Expect(401, 403, 403, 200, 200),
    "api/v1/environments/<name>/": Expect(401, 403, 403, 404, 404),
    "api/v1/environments/<name>/pause/": Expect(401, 403, 403, 405, 405),
    "api/v1/environments/<name>/resume/": Expect(401, 403, 403, 405, 405),
    "api/v1/freeze-windows/": Expect(401, 403, 403, 200, 200),
    "api/v1/freeze-windows/<pk>/": Expect(401, 403, 403, 404, 404),
    "api/v1/deploys/": API_VIEWER,
    "api/v1/deploys/<pk>/": Expect(401, 403, 404, 404, 404),
    "api/v1/deploys/<pk>/cancel/": Expect(401, 403, 403, 405, 405),
    "api/v1/deploys/<pk>/review/": Expect(401, 403, 403, 405, 405),
    "api/v1/deploys/<pk>/approve/": Expect(401, 403, 403, 405, 405),
    "api/v1/deploys/<pk>/reject/": Expect(401, 403, 403, 405, 405),
    "api/v1/deploys/<pk>/break-glass/": Expect(401, 403, 403, 403, 405),
    "api/v1/deploys/redeploy-last-good/": Expect(401, 403, 403, 405, 405),
    "api/v1/deploys/rollback/": Expect(401, 403, 403, 405, 405),
    "api/v1/deployed-now/": API_VIEWER,
    # Deploys pages (deploys/views.py)
    "deploys/": HTML_VIEWER,
    "deploys/new/": Expect(302, 403, 403, 200, 200),
    "deploys/new/preview/": Expect(302, 403, 403, 200, 200),
    "deploys/<int:pk>/": Expect(302, 403, 404, 404, 404),
    "deploys/<int:pk>/cancel/": Expect(302, 405, 405, 405, 405),
    "deploys/<int:pk>/review/": Expect(302, 405, 405, 405, 405),
    "deploys/<int:pk>/signoff/": Expect(302, 403, 403, 404, 404),
    "deploys/<int:pk>/redeploy/": Expect(302, 403, 403, 404, 404),
    "deploys/environments/": HTML_VIEWER,
    "deploys/environments/<slug:name>/": Expect(302, 403, 404, 404, 404),
    "deploys/environments/<slug:name>/redeploy-last-good/": Expect(
        302, 405, 405, 405, 405
    ),
    "deploys/environments/<slug:name>/pause/": Expect(302, 405, 405, 405, 405),
    "deploys/environments/<slug:name>/resume/": Expect(302, 405, 405, 405, 405),
    "deploys/environments/<slug:name>/rollback/": Expect(302, 403, 403, 404, 404),
    # Exact commits (deploys/commit_views.py)
    "deploys/deployed/": HTML_VIEWER,
    # Secret rotation (rotations/api.py, rotations/views.py)
    "api/v1/secret-schedules/": API_VIEWER,
    "api/v1/secret-schedules/<pk>/": Expect(401, 403, 404, 404, 404),
    "api/v1/secret-schedules/<pk>/rotate/": Expect(401, 403, 403, 403, 405),
    "api/v1/secret-schedules/<pk>/rotations/": Expect(401, 403, 404, 404, 404),
    "api/v1/secret-schedules/audit/": Expect(401, 403, 403, 405, 405),
    "api/v1/secret-schedules/import-proposals/": Expect(401, 403, 403, 403, 200),
    "api/v1/secret-schedules/import/": Expect(401, 403, 403, 403, 405),
    "webhooks/": Expect(302, 403, 403, 200, 200),
    "secrets/": HTML_VIEWER,
    "secrets/audit/": Expect(302, 405, 405, 405, 405),
    "secrets/import/": Expect(302, 403, 403, 403, 200),
    "secrets/<int:pk>/": Expect(302, 403, 404, 404, 404),
    "secrets/<int:pk>/rotate/": Expect(302, 405, 405, 405, 405),
    # Runbooks (controlplane/runbook_urls.py)
    "runbooks/": HTML_VIEWER,
    "runbooks/<slug:slug>/": Expect(302, 403, 404, 404, 404),
    # Django admin: the admin role only
    "admin/": Expect(302, 302, 302, 302, 200),
    "admin/*": Expect(302, 302, 302, 302, ANY),
}

PERSONAS = ("anonymous", "outsider", "viewer", "sre", "admin")
PERSONA_FIXTURES = {
    "outsider": "outsider",
    "viewer": "viewer",
    "sre": "sre",
    "admin": "admin_user",
}


def normalise(route: str) -> str:
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", route)
    return route.replace("^", "").replace("$", "")


def walk(
    patterns: Sequence[URLPattern | URLResolver], prefix: str = ""
) -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield normalise(prefix + str(pattern.pattern))


def all_routes() -> list[str]:
    # DRF's format-suffix twins (``runners.<format>``) answer like the route they
    # duplicate, so they need no entries of their own.
    routes = {r for r in walk(get_resolver().url_patterns) if "<format>" not in r}
    return sorted(routes)


def expectation(route: str) -> Expect | None:
    if route in ROLE_MATRIX:
        return ROLE_MATRIX[route]
    prefixes = [p for p in ROLE_MATRIX if p.endswith("*") and route.startswith(p[:-1])]
    if prefixes:
        return ROLE_MATRIX[max(prefixes, key=len)]
    return None


def concrete_url(route: str) -> str:
    return "/" + re.sub(r"<[^>]+>", "0", route)


ROUTES = all_routes()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Hundreds of persona users are made here; real hashing would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_every_route_has_a_role_matrix_entry() -> None:
    missing = [route for route in ROUTES if expectation(route) is None]
    assert not missing, (
        "Routes without a ROLE_MATRIX entry in tests/test_role_matrix.py; add one "
        "line per route (GET status for anonymous, outsider, viewer, sre, admin):\n"
        + "\n".join(
            f'    "{route}": Expect(..., ..., ..., ..., ...),' for route in missing
        )
    )


def test_every_role_matrix_entry_is_a_route() -> None:
    stale = [
        key
        for key in ROLE_MATRIX
        if not (key.endswith("*") and any(r.startswith(key[:-1]) for r in ROUTES))
        and key not in ROUTES
    ]
    assert not stale, f"ROLE_MATRIX entries for routes that no longer exist: {stale}"


def answers(route: str, persona: str, user: User | None) -> str | None:
    """None if ``route`` answers ``persona`` as the matrix says, else the problem."""
    expected = getattr(expectation(route), persona)
    client = Client() if user is None else logged_in(user)

    status = client.get(concrete_url(route)).status_code

    if expected is ANY and status >= 500:
        return f"GET /{route} as {persona}: {status}, expected no server error"
    if expected is not ANY and status != expected:
        return f"GET /{route} as {persona}: {status}, expected {expected}"
    if user is None and status == 302:
        # Anonymous people end up on the one audited login page (the admin site
        # passes them through its own login URL first).
        followed = client.get(concrete_url(route), follow=True)
        landed = followed.redirect_chain[-1][0]
        if not landed.startswith("/accounts/login/") or followed.status_code != 200:
            return f"GET /{route} as anonymous: redirected to {landed}, not the login"
    return None


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in ROUTES if expectation(r) is not None])
def test_route_answers_each_persona_as_the_matrix_says(
    route: str, request: pytest.FixtureRequest
) -> None:
    problems = []
    for persona in PERSONAS:
        user: User | None = (
            None
            if persona == "anonymous"
            else request.getfixturevalue(PERSONA_FIXTURES[persona])
        )
        problem = answers(route, persona, user)
        if problem:
            problems.append(problem)

    assert not problems, "\n".join(problems)
