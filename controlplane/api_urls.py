"""The REST API under ``/api/v1/``, its OpenAPI schema and its docs page.

Each app with an API defines ``router`` (a DRF ``DefaultRouter``-style router) in its
``api.py``; ``APP_ROUTERS`` lists the apps whose routers are mounted here.
"""

from __future__ import annotations

import importlib

from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from controlplane.api import AuditEventViewSet, WhoAmIView

router = SimpleRouter(trailing_slash=True)
router.register("audit-events", AuditEventViewSet, basename="audit-event")

# Apps that mount their own router under /api/v1/ once their api.py defines one.
APP_ROUTERS = ("runners", "deploys", "rotations")


def _app_router_urls() -> list[URLPattern | URLResolver]:
    urls: list[URLPattern | URLResolver] = []
    for app in APP_ROUTERS:
        try:
            module = importlib.import_module(f"{app}.api")
        except ModuleNotFoundError as exc:
            # Only a missing api.py is tolerated; an import error inside it is a bug
            # and must surface.
            if exc.name != f"{app}.api":
                raise
            continue
        app_router = getattr(module, "router", None)
        if app_router is not None:
            urls.append(path("", include(app_router.urls)))
    return urls


v1_patterns: list[URLPattern | URLResolver] = [
    path("auth/whoami", WhoAmIView.as_view(), name="whoami"),
    path("", include(router.urls)),
    *_app_router_urls(),
]

app_name = "api"
urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/", include(v1_patterns)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # A page for people: anonymous visitors are sent to the login page. (DRF exempts
    # its views from LoginRequiredMiddleware and answers API clients with 401.)
    path(
        "docs/",
        # The split view serves its script from a URL, not inline (the CSP);
        # Swagger UI draws its icons from data: URIs.
        login_required(
            csp_update({"img-src": ["'self'", "data:"]})(
                SpectacularSwaggerSplitView.as_view(url_name="api:schema")
            )
        ),
        name="docs",
    ),
]
