"""The deploys app's pages."""

from __future__ import annotations

from django.urls import path

from deploys import secrets_views

app_name = "deploys"
urlpatterns = [
    path("secrets/", secrets_views.secret_list, name="secret-list"),
    path("secrets/audit/", secrets_views.secret_audit, name="secret-audit"),
    path("secrets/import/", secrets_views.secret_import, name="secret-import"),
    path("secrets/<int:pk>/", secrets_views.secret_detail, name="secret-detail"),
    path("secrets/<int:pk>/rotate/", secrets_views.secret_rotate, name="secret-rotate"),
]
