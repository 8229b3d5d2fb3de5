"""Project-wide pages: home, login/logout, the audit log, error pages, operations
endpoints."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseServerError,
    JsonResponse,
)
from django.shortcuts import render
from django.template import loader
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from controlplane import audit, throttle
from controlplane.board import build_board
from controlplane.filters import AuditEventFilterSet
from controlplane.liveness import stale_jobs
from controlplane.models import AuditEvent
from controlplane.permissions import role_required
from controlplane.roles import Role

AUDIT_PAGE_SIZE = 50


@require_GET
@role_required(Role.VIEWER)
def home(request: HttpRequest) -> HttpResponse:
    """The status board: open alerts, runners by state, environments, the last
    deploys, what is overdue, background tasks (``controlplane.board``).

    htmx polls this URL every 5 s; for those requests only the board is rendered.
    The queries are a fixed number whatever the size of the fleet or history."""
    now = timezone.now()
    board = build_board(now)
    ctx: dict[str, Any] = {
        "alerts": board.alerts,
        "panel_templates": [template for template, _ in board.panels.values()],
        "now": now,
    }
    for _, context in board.panels.values():
        ctx.update(context)
    is_htmx = request.headers.get("HX-Request") == "true"
    template = "controlplane/_board.html" if is_htmx else "controlplane/home.html"
    response = render(request, template, ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


@role_required(Role.VIEWER)
def audit_list(request: HttpRequest) -> HttpResponse:
    """The audit log, newest first, filtered by the same FilterSet as the API."""
    filterset = AuditEventFilterSet(
        request.GET, queryset=AuditEvent.objects.order_by("-created_at", "-pk")
    )
    page = Paginator(filterset.qs, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    events = list(page.object_list)
    for event in events:
        event.target_url = audit.target_url(event)
    ctx = {"filter": filterset, "page_obj": page, "events": events}
    return render(request, "controlplane/audit_list.html", ctx)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's sign-in form, refusing a locked account or address before checking
    the password, and counting each failure (``controlplane.throttle``)."""

    lockout: datetime | None = None

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        address = _client_addr(self.request) if self.request else ""
        now = timezone.now()
        self.lockout = throttle.login_locked_until(username, address, now)
        if self.lockout is not None:
            raise ValidationError(
                throttle.lockout_message(self.lockout, now), code="throttled"
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            throttle.login_failed(username, address, now)
            raise
        if self.user_cache is not None:  # None: a field was left empty
            throttle.login_succeeded(username)
        return cleaned


class LoginView(auth_views.LoginView):
    """Django's login page, with every attempt in the audit log. A failed attempt
    records the username tried and the client address, never the password. A
    locked account or address gets 429 and says when to try again."""

    authentication_form = ThrottledAuthenticationForm

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        # The session's 12-hour limit counts from this login, not from a session
        # the browser may have carried from an earlier one.
        self.request.session["started_at"] = self.request.session["last_seen"] = (
            time.time()
        )
        audit.record(
            form.get_user(), "session.login", remote_addr=_client_addr(self.request)
        )
        return response

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        lockout = getattr(form, "lockout", None)
        audit.record(
            None,
            "session.login",
            outcome=AuditEvent.Outcome.FAILURE,
            username=str(form.data.get("username", ""))[:150],
            remote_addr=_client_addr(self.request),
            locked=lockout is not None,
        )
        response = super().form_invalid(form)
        if lockout is not None:
            response.status_code = 429
            response["Retry-After"] = str(
                throttle.seconds_left(lockout, timezone.now())
            )
        return response


class LogoutView(auth_views.LogoutView):
    """Logs out (POST only, as in Django), audits it, and says so on the login page."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            audit.record(request.user, "session.logout")
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You have been logged out.")
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change page, audited."""

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit.record(self.request.user, "user.password_change")
        return response


def _client_addr(request: HttpRequest) -> str:
    # REMOTE_ADDR unless TRUSTED_PROXY_HOPS names proxies that append to
    # X-Forwarded-For: otherwise that header is whatever the client chose to send,
    # and neither the audit trail nor the throttle may be forgeable.
    return throttle.client_address(request.META)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """403 page naming the role the page needs, when the view said so."""
    reason = str(exception) if exception.args else ""
    return render(request, "403.html", {"reason": reason}, status=403)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        # A URL no API route matches still answers in DRF's error format.
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", {}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """500 page rendered without the request context: it must work when the
    database, the session or a context processor is what failed."""
    if _is_api(request):
        return JsonResponse({"detail": "A server error occurred."}, status=500)
    return HttpResponseServerError(loader.get_template("500.html").render())


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


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

    Background jobs past their bound (``controlplane.liveness``) are listed under
    ``stale_jobs`` with status ``degraded`` but still 200: readiness decides whether
    a load balancer sends this web process traffic, and a stopped beat or worker is
    not cured by taking the UI and API away from the SREs who must fix it.
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
    stale: list[dict[str, Any]] = []
    if checks["database"] == "ok":
        stale = [job.as_dict() for job in stale_jobs(timezone.now())]
    return JsonResponse(
        {
            "status": "unavailable" if failed else "degraded" if stale else "ok",
            "failed": failed,
            "checks": checks,
            "stale_jobs": stale,
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
