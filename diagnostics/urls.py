"""Diagnostics pages under ``/fleet/<runner>/diagnostics/``."""

from __future__ import annotations

from django.urls import path

from diagnostics import views

app_name = "diagnostics"
urlpatterns = [
    path("<str:name>/diagnostics/run/", views.run, name="run"),
    path("<str:name>/diagnostics/install-agent/", views.install_agent, name="install"),
    path("<str:name>/diagnostics/panel/", views.panel, name="panel"),
    path("<str:name>/diagnostics/<str:token>/", views.report, name="report"),
]
