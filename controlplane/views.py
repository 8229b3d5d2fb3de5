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
    return JsonResponse({"status": "ok"})


@require_GET
@login_not_required
def readyz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@login_not_required
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse("", content_type="text/plain")
