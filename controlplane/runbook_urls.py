"""Runbook URLs, under /runbooks/ (alerts link to them by path)."""

from __future__ import annotations

from django.urls import path

from controlplane import runbook_views

app_name = "runbooks"

urlpatterns = [
    path("", runbook_views.index, name="index"),
    path("<slug:slug>/", runbook_views.page, name="page"),
]
