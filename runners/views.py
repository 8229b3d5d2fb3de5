"""The fleet pages: the overview with live counts and the runner table, one runner's
detail page, and the drain/undrain forms."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from controlplane.permissions import role_required
from controlplane.roles import Role, has_role
from controlplane.runbooks import runbook_url
from deploys.models import WorkflowJob
from runners import facts, freshness, placement, trust, trust_views
from runners.filters import RunnerFilterSet
from runners.freshness import SIGNALS
from runners.models import Runner, RunnerEvent, RunnerSync
from runners.states import Reason, State, runbook_for
from runners.sync import sync_budget

PAGE_SIZE = 50
TIMELINE_WINDOW = timedelta(hours=24)
# The health strip's zoom levels (``?window=``), shortest first.
TIMELINE_WINDOWS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
# A runner flapping every sweep for a day would have thousands of transitions; the bar
# only needs enough of them to be drawn, and the page must stay bounded.
TIMELINE_MAX_EVENTS = 2_000
RECENT_EVENTS = 50
# Events read to fill RECENT_EVENTS lines once repeats are collapsed.
EVENTS_READ = 500
RECENT_JOBS = 20
COVERAGE_LABELS = {
    "github": "GitHub status",
    "heartbeat": "Heartbeat",
    "exporter": "Exporter",
}


# Fleet summary ----------------------------------------------------------------------


def fleet_counts(now: datetime) -> dict[str, int]:
    """Runners per health state, drained and removed, and signal coverage, in one
    aggregate query.

    Health states, drained and coverage count active runners only (removed ones are
    history). Coverage is ``Runner.objects.coverage()``, the count the coverage
    metric reports too."""
    active = Q(removed_at__isnull=True)
    aggregates: dict[str, Any] = {
        "removed": Count("pk", filter=Q(removed_at__isnull=False)),
        "drained": Count("pk", filter=active & Q(drained=True)),
    }
    for state in State:
        aggregates[str(state)] = Count("pk", filter=active & Q(state=state))
    return Runner.objects.coverage(now, **aggregates)


@dataclass(frozen=True)
class Coverage:
    """How many active runners one signal currently reports for."""

    signal: str
    fresh: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.fresh / self.total) if self.total else 0


def format_age(age: timedelta | None) -> str:
    """A short human age: "12 s", "4 min", "3 h", "2 d" ("never" for None)."""
    if age is None:
        return "never"
    seconds = max(0, int(age.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@dataclass(frozen=True)
class FleetRow:
    """One runner in the fleet table, with the figures computed for display."""

    runner: Runner
    url: str
    state_age: str
    heartbeat_age: str
    heartbeat_fresh: bool
    github_fresh: bool
    # Non-empty while the stored state contradicts the live signals.
    reevaluating: str

    @classmethod
    def of(cls, runner: Runner, now: datetime, prefix: str = "/fleet/") -> FleetRow:
        return cls(
            runner=runner,
            # Built here rather than with {% url %} per row: reversing costs more
            # than the rest of a row's rendering.
            url=f"{prefix}{quote(runner.name, safe='')}/",
            state_age=format_age(now - runner.state_since),
            heartbeat_age=format_age(
                now - runner.last_heartbeat_at if runner.last_heartbeat_at else None
            ),
            heartbeat_fresh=runner.heartbeat_is_fresh(now),
            github_fresh=runner.github_is_fresh(now),
            reevaluating=freshness.reevaluating(runner, now),
        )


# Only the columns the table shows: the facts and exporter JSON can be large and are
# for the detail page.
TABLE_COLUMNS = (
    "pk",
    "name",
    "labels",
    "github_status",
    "github_busy",
    "github_seen_at",
    "removed_at",
    "last_heartbeat_at",
    "heartbeat_deadline",
    "state",
    "reason",
    "state_since",
    "drained",
    "drained_reason",
    # The trust override badge.
    "trusted_until",
    "trusted_by",
    "trusted_reason",
    # The version and name-label flags (runners.hygiene).
    "runner_version",
    "version_outdated",
    "version_note",
    "missing_name_label",
)


@require_GET
@role_required(Role.VIEWER)
def fleet(request: HttpRequest) -> HttpResponse:
    """The fleet: counts by state, signal coverage and the filtered runner table.

    htmx polls this URL with the page's own query string every 5 s; for those
    requests (``HX-Request``) only the live partial is rendered."""
    now = timezone.now()
    runners = Runner.objects.only(*TABLE_COLUMNS).order_by("name", "pk")
    filterset = RunnerFilterSet(request.GET, queryset=runners.with_pools())
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = fleet_counts(now)
    prefix = reverse("runners:fleet")
    ctx = {
        "filter": filterset,
        "page_obj": page,
        "rows": [FleetRow.of(runner, now, prefix) for runner in page.object_list],
        "counts": counts,
        "states": [(str(state), counts[str(state)]) for state in State],
        "coverage": [
            Coverage(COVERAGE_LABELS[signal], counts[signal], counts["active"])
            for signal in SIGNALS
        ],
        "now": now,
    }
    is_htmx = request.headers.get("HX-Request") == "true"
    if not is_htmx:
        # The sync's GitHub budget changes slowly: shown on load, not on every poll.
        # Pages are estimated from the fleet size (100 runners a page) rather than
        # read from the sync's stored page list, which is large.
        pages = max(1, math.ceil((counts["active"] + counts["removed"]) / 100))
        ctx["budget"] = sync_budget(pages)
        ctx["last_sync"] = (
            RunnerSync.objects.order_by("-last_sync_at")
            .only("last_sync_at", "last_requests", "last_not_modified")
            .first()
        )
    template = "runners/_table.html" if is_htmx else "runners/fleet.html"
    response = render(request, template, ctx)
    # The same URL answers with a page or a fragment: caches must tell them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


# Runner detail ------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A stretch of the health timeline spent in one state (``none``: the runner
    was not registered yet)."""

    state: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def weight(self) -> int:
        """Its width in the bar, relative to the others (whole seconds)."""
        return max(1, round(self.seconds))


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    segments: list[Segment]

    @property
    def window_seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def observed_seconds(self) -> float:
        """How long of the window the runner existed (and so was observed)."""
        return sum(s.seconds for s in self.segments if s.state != "none")

    @property
    def healthy_percent(self) -> float | None:
        """Share of the time the runner existed that it was healthy."""
        known = self.observed_seconds
        if not known:
            return None
        healthy = sum(s.seconds for s in self.segments if s.state == State.HEALTHY)
        return round(100 * healthy / known, 1)


def health_timeline(
    runner: Runner, now: datetime, window: timedelta = TIMELINE_WINDOW
) -> Timeline:
    """The runner's states over the ``window`` before ``now``, from its state-change
    events in the window and the last one before it (two queries).

    1. The state at the window's start is the target of the last transition before
       it; failing that, the source of the first transition inside it; failing that
       (no transitions at all), the current state.
    2. Each transition in the window ends one segment and starts the next.
    3. Time before the runner was registered is a ``none`` segment.
    """
    start = now - window
    changes = runner.events.filter(kind=RunnerEvent.Kind.STATE_CHANGE)
    inside = list(
        changes.filter(created_at__gt=start, created_at__lte=now)
        .order_by("created_at", "pk")
        .values_list("created_at", "from_state", "to_state")[:TIMELINE_MAX_EVENTS]
    )
    before = (
        changes.filter(created_at__lte=start)
        .order_by("-created_at", "-pk")
        .values_list("to_state", flat=True)
        .first()
    )
    if before:
        state = before
    elif inside:
        state = inside[0][1] or runner.state
    else:
        state = runner.state
    segments: list[Segment] = []
    cursor = start
    if before is None and runner.created > start:
        cursor = min(runner.created, now)
        segments.append(Segment("none", start, cursor))
    for at, _, to_state in inside:
        if at > cursor:
            segments.append(Segment(state, cursor, at))
            cursor = at
        state = to_state
    if now > cursor:
        segments.append(Segment(state, cursor, now))
    return Timeline(start=start, end=now, segments=_merge(segments))


def _merge(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in segments:
        if merged and merged[-1].state == segment.state:
            merged[-1] = Segment(segment.state, merged[-1].start, segment.end)
        else:
            merged.append(segment)
    return merged


class DrainForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        strip=True,
        help_text="Why it leaves deploy rotation (shown to everyone, kept in the audit log).",
        widget=forms.TextInput(attrs={"placeholder": "e.g. kernel upgrade, INC-1234"}),
    )


@dataclass(frozen=True)
class EventLine:
    """One line of the runner's event list: an event and how many identical ones
    (same kind, message, actor and states) came just before it."""

    event: RunnerEvent
    repeats: int
    first_at: datetime


def collapse_repeats(events: list[RunnerEvent], limit: int) -> list[EventLine]:
    """Consecutive identical events (a token issued on every demo restart, a
    flapping probe) as one line with a count, newest first, at most ``limit``."""
    lines: list[EventLine] = []
    for event in events:
        if lines and _same(lines[-1].event, event):
            last = lines[-1]
            lines[-1] = EventLine(last.event, last.repeats + 1, event.created_at)
            continue
        if len(lines) == limit:
            break
        lines.append(EventLine(event, 1, event.created_at))
    return lines


def _same(a: RunnerEvent, b: RunnerEvent) -> bool:
    return (a.kind, a.message, a.actor, a.from_state, a.to_state) == (
        b.kind,
        b.message,
        b.actor,
        b.from_state,
        b.to_state,
    )


def _window(request: HttpRequest) -> str:
    """The zoom asked for, or 24 h for anything else."""
    asked = request.GET.get("window", "")
    return asked if asked in TIMELINE_WINDOWS else "24h"


def _detail_context(
    request: HttpRequest,
    runner: Runner,
    form: DrainForm | None = None,
    trust_form: trust_views.TrustForm | None = None,
) -> dict[str, Any]:
    now = timezone.now()
    row = FleetRow.of(runner, now, reverse("runners:fleet"))
    slug = runbook_for(runner.reason)
    window = _window(request)
    eligibility = placement.eligibility(runner, now)
    return {
        "runner": runner,
        "row": row,
        "reasons": [Reason(reason) for reason in runner.reasons],
        "reason_label": Reason(runner.reason).label if runner.reason else "",
        "runbook_url": runbook_url(slug),
        "eligibility": eligibility,
        "ineligible": eligibility.reasons,
        "timeline": health_timeline(runner, now, TIMELINE_WINDOWS[window]),
        "window": window,
        "windows": list(TIMELINE_WINDOWS),
        "facts": facts.readable(runner),
        "events": collapse_repeats(
            list(runner.events.all()[:EVENTS_READ]), RECENT_EVENTS
        ),
        "jobs": list(WorkflowJob.objects.for_runner(runner.name)[:RECENT_JOBS]),
        "form": form or DrainForm(),
        "can_drain": has_role(request.user, Role.SRE),
        "exporter_age": format_age(
            now - runner.exporter_checked_at if runner.exporter_checked_at else None
        ),
        "github_age": format_age(
            now - runner.github_seen_at if runner.github_seen_at else None
        ),
        "now": now,
        **trust_views.context(request, runner, trust_form),
    }


@require_GET
@role_required(Role.VIEWER)
def detail(request: HttpRequest, name: str) -> HttpResponse:
    """One runner: eligibility per environment, the health strip (``?window=1h|6h|24h|7d``),
    facts, events, jobs, drain form."""
    runner = get_object_or_404(Runner.objects.with_pools(), name=name)
    return render(request, "runners/detail.html", _detail_context(request, runner))


@require_POST
@role_required(Role.SRE)
def drain(request: HttpRequest, name: str) -> HttpResponse:
    """Take the runner out of deploy rotation, with a reason (audited)."""
    runner = get_object_or_404(Runner.objects.with_pools(), name=name)
    form = DrainForm(request.POST)
    if not form.is_valid():
        ctx = _detail_context(request, runner, form)
        return render(request, "runners/detail.html", ctx, status=400)
    runner.drain(request.user, form.cleaned_data["reason"])
    messages.success(request, f"{runner.name} is drained: deploys will not use it.")
    return redirect("runners:detail", name=runner.name)


@require_POST
@role_required(Role.SRE)
def undrain(request: HttpRequest, name: str) -> HttpResponse:
    """Put the runner back into deploy rotation (audited)."""
    runner = get_object_or_404(Runner, name=name)
    if runner.drained:
        runner.undrain(request.user)
        messages.success(request, f"{runner.name} is back in deploy rotation.")
    return redirect("runners:detail", name=runner.name)


@require_POST
@role_required(Role.SRE)
def trust_grant(request: HttpRequest, name: str) -> HttpResponse:
    """Trust the runner for deploys for a few hours, with a reason (audited)."""
    runner = get_object_or_404(Runner.objects.with_pools(), name=name)
    form = trust_views.TrustForm(request.POST)
    if form.is_valid():
        try:
            trust.grant(
                runner,
                request.user,
                form.cleaned_data["reason"],
                timedelta(hours=form.cleaned_data["hours"]),
                timezone.now(),
            )
        except trust.TrustRefused as exc:
            form.add_error(None, str(exc))
    if not form.is_valid():
        ctx = _detail_context(request, runner, trust_form=form)
        return render(request, "runners/detail.html", ctx, status=400)
    messages.success(
        request,
        f"{runner.name} is trusted for deploys until "
        f"{runner.trusted_until:%Y-%m-%d %H:%M} UTC.",
    )
    return redirect("runners:detail", name=runner.name)


@require_POST
@role_required(Role.SRE)
def trust_clear(request: HttpRequest, name: str) -> HttpResponse:
    """End the runner's trust override now (audited)."""
    runner = get_object_or_404(Runner, name=name)
    if trust.clear(runner, request.user, timezone.now()):
        messages.success(request, f"{runner.name} is no longer trusted for deploys.")
    return redirect("runners:detail", name=runner.name)
