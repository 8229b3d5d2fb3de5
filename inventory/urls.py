"""The inventory drift page under ``/inventory/``."""

from __future__ import annotations

from django.urls import path

from inventory import views

app_name = "inventory"
urlpatterns = [
    path("", views.drift_page, name="drift"),
]
