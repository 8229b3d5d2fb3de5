"""The secrets pages under ``/secrets/``."""

from __future__ import annotations

from django.urls import path

from rotations import views

app_name = "rotations"
urlpatterns = [
    path("secrets/", views.secret_list, name="secret-list"),
    path("secrets/audit/", views.secret_audit, name="secret-audit"),
    path("secrets/import/", views.secret_import, name="secret-import"),
    path("secrets/<int:pk>/", views.secret_detail, name="secret-detail"),
    path("secrets/<int:pk>/rotate/", views.secret_rotate, name="secret-rotate"),
]
