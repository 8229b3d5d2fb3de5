"""The stale runners page under ``/retention/`` (apart from ``/fleet/<name>/``, so no
runner name can collide with it)."""

from __future__ import annotations

from django.urls import path

from runners import retention_views

app_name = "retention"
urlpatterns = [
    path("", retention_views.stale_list, name="stale"),
    path("<str:name>/remove/", retention_views.remove, name="remove"),
]
