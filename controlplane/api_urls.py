"""The REST API under ``/api/v1/``, its OpenAPI schema and its docs page.

Each app with an API defines ``router`` in its ``api.py``; this URLconf, a
composition root, mounts each one explicitly.
"""

from __future__ import annotations

from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from controlplane.api import AuditEventViewSet, WhoAmIView
from deploys import api as deploys_api
from diagnostics import api as diagnostics_api
from inventory import api as inventory_api
from rotations import api as rotations_api
from runners import api as runners_api

router = SimpleRouter(trailing_slash=True)
router.register("audit-events", AuditEventViewSet, basename="audit-event")

v1_patterns: list[URLPattern | URLResolver] = [
    path("auth/whoami", WhoAmIView.as_view(), name="whoami"),
    path("", include(router.urls)),
    path("", include(runners_api.router.urls)),
    path("", include(deploys_api.router.urls)),
    path("", include(rotations_api.router.urls)),
    path("", include(diagnostics_api.router.urls)),
    path("", include(inventory_api.router.urls)),
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
