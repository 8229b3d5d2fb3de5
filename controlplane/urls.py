"""Top-level URLs. Each app has its own ``urls.py`` (HTML) and ``api.py`` router."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from controlplane import views
from deploys import webhooks
from diagnostics import receive as diagnostics
from runners import heartbeat, sd

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    # Login and logout are audited; no self-service password reset (accounts are
    # made with manage.py createuser and there is no mail server to trust).
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("audit/", views.audit_list, name="audit-list"),
    path("fleet/", include("runners.urls")),
    path("fleet/", include("diagnostics.urls")),
    path("retention/", include("runners.retention_urls")),
    path("", include("deploys.urls")),
    path("", include("rotations.urls")),
    path("inventory/", include("inventory.urls")),
    path("runbooks/", include("controlplane.runbook_urls")),
    path("api/", include("controlplane.api_urls")),
    path("admin/", admin.site.urls),
    path("github/webhook", webhooks.receive, name="github-webhook"),
    path("heartbeat", heartbeat.receive, name="heartbeat"),
    path("diagnostics", diagnostics.receive, name="diagnostics-report"),
    path("sd/exporters", sd.exporters, name="sd-exporters"),
]

handler403 = "controlplane.views.permission_denied"
handler404 = "controlplane.views.page_not_found"
handler500 = "controlplane.views.server_error"
