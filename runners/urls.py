"""The fleet pages under ``/fleet/``."""

from __future__ import annotations

from django.urls import path

from runners import views

app_name = "runners"
urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("<str:name>/", views.detail, name="detail"),
    path("<str:name>/drain/", views.drain, name="drain"),
    path("<str:name>/undrain/", views.undrain, name="undrain"),
    path("<str:name>/trust/", views.trust_grant, name="trust"),
    path("<str:name>/untrust/", views.trust_clear, name="untrust"),
]
