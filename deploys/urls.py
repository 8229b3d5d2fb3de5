"""The deploys app's pages."""

from __future__ import annotations

from django.urls import path

from deploys import (
    approval_views,
    commit_views,
    environment_views,
    run_views,
    signoff_views,
    views,
)

app_name = "deploys"
urlpatterns = [
    path("deploys/", views.run_list, name="run-list"),
    path("deploys/new/", views.run_new, name="run-new"),
    path("deploys/new/preview/", views.run_new_preview, name="run-new-preview"),
    path("deploys/<int:pk>/", run_views.run_detail, name="run-detail"),
    path("deploys/<int:pk>/cancel/", run_views.run_cancel, name="run-cancel"),
    path("deploys/<int:pk>/redeploy/", run_views.run_redeploy, name="run-redeploy"),
    path("deploys/<int:pk>/review/", approval_views.run_review, name="run-review"),
    path("deploys/<int:pk>/signoff/", signoff_views.run_signoff, name="run-signoff"),
    path("deploys/environments/", views.environment_list, name="environment-list"),
    path(
        "deploys/environments/<slug:name>/",
        views.environment_detail,
        name="environment-detail",
    ),
    path(
        "deploys/environments/<slug:name>/redeploy-last-good/",
        views.environment_redeploy,
        name="environment-redeploy",
    ),
    path(
        "deploys/environments/<slug:name>/pause/",
        environment_views.environment_pause,
        name="environment-pause",
    ),
    path(
        "deploys/environments/<slug:name>/resume/",
        environment_views.environment_resume,
        name="environment-resume",
    ),
    path(
        "deploys/environments/<slug:name>/rollback/",
        commit_views.environment_rollback,
        name="environment-rollback",
    ),
    path("deploys/deployed/", commit_views.deployed_now_page, name="deployed-now"),
    path("webhooks/", views.webhook_list, name="webhook-list"),
]
