"""Runbook pages: the index with search, and one page per runbook."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from controlplane import runbooks
from controlplane.permissions import role_required
from controlplane.roles import Role


@role_required(Role.VIEWER)
def index(request: HttpRequest) -> HttpResponse:
    """Every runbook, or those matching ``?q=`` (words in any order)."""
    query = request.GET.get("q", "").strip()[:200]
    ctx = {"query": query, "pages": runbooks.search(query)}
    return render(request, "runbooks/index.html", ctx)


@role_required(Role.VIEWER)
def page(request: HttpRequest, slug: str) -> HttpResponse:
    """One runbook; an alias redirects to the page's own slug, so links stay put."""
    runbook = runbooks.get(slug)
    if runbook is None:
        raise Http404("No runbook by that name.")
    if runbook.slug != slug:
        return redirect("runbooks:page", slug=runbook.slug, permanent=True)
    return render(request, "runbooks/page.html", {"runbook": runbook})
