"""Project-wide pages: home, operations endpoints."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from controlplane.permissions import role_required
from controlplane.roles import Role


@role_required(Role.VIEWER)
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "controlplane/home.html", {})


@require_GET
@login_not_required
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and serving; touches nothing else (not even the database)."""
    return JsonResponse({"status": "ok"})


@require_GET
@login_not_required
def readyz(request: HttpRequest) -> HttpResponse:
    """Ready for traffic: the database answers and the Celery broker takes messages.

    503 names each failed check and the exception's type only: this page needs no
    login, so hosts and messages go to the log.
    """
    import logging

    from django.db import connection

    from controlplane.tasks import check_broker

    def check_database() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    checks: dict[str, str] = {}
    for name, check in (("database", check_database), ("broker", check_broker)):
        try:
            check()
        except Exception as exc:
            logging.getLogger(__name__).warning(
                "readyz: %s check failed: %s", name, exc
            )
            checks[name] = f"failed: {type(exc).__name__}"
        else:
            checks[name] = "ok"
    failed = [name for name, result in checks.items() if result != "ok"]
    return JsonResponse(
        {
            "status": "unavailable" if failed else "ok",
            "failed": failed,
            "checks": checks,
        },
        status=503 if failed else 200,
    )


@require_GET
@login_not_required
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: process metrics and the figures computed from the DB."""
    # Imported here: the module-level name ``metrics`` is this view.
    from controlplane import metrics as exposition

    return HttpResponse(exposition.render(), content_type=exposition.CONTENT_TYPE)
