"""Top-level URLs. Each app has its own ``urls.py`` (HTML) and ``api.py`` router."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from controlplane import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
