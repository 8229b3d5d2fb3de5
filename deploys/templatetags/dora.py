"""``{% dora_outcomes env %}``: the environment page's deploy outcomes (the four DORA
figures, their charts and what is too thin to measure), one line in the page and
no view changes; three queries (``deploys.dora.compute``)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from deploys import dora_charts
from deploys.dora import Figures, compute
from deploys.models import Environment

register = template.Library()


def notes(figures: Figures) -> list[str]:
    """What the figures cannot say, in plain words."""
    days = figures.window_days
    found: list[str] = []
    if not figures.changes:
        found.append(f"No change reached a runner in {days} days: nothing to measure.")
    elif not figures.changes_deployed:
        found.append(f"No change deployed successfully in {days} days.")
    if figures.young:
        found.append(
            f"Only {figures.observed_days:.0f} of {days} days of history: the "
            "environment was added since; deployment frequency is per day since then."
        )
    if figures.lead_time_unknown:
        count = figures.lead_time_unknown
        found.append(
            f"Lead time unknown for {count} deploy{'s' if count != 1 else ''} made "
            "before commit dates were recorded."
        )
    if figures.changes and not figures.failures:
        found.append(f"No change failed in {days} days.")
    since = figures.failing_since
    if since is not None:
        found.append(
            f"Still failing since {since:%Y-%m-%d %H:%M} UTC: no good deploy has "
            "followed that failed change yet."
        )
    return found


@register.inclusion_tag("deploys/_dora.html")
def dora_outcomes(env: Environment) -> dict[str, Any]:
    figures = compute(env, timezone.now())
    return {
        "env": env,
        "figures": figures,
        "notes": notes(figures),
        "per_day": dora_charts.deploys_per_day(figures),
        "lead": dora_charts.lead_times(figures),
        "restores": dora_charts.restores(figures),
        "lead_median": _duration(figures.lead_time_median),
        "restore_median": _duration(figures.restore_median),
        "lead_rows": [
            (item, dora_charts.duration(item.seconds)) for item in figures.lead_times
        ],
        "failure_rows": [(item, _duration(item.seconds)) for item in figures.failures],
    }


def _duration(seconds: float | None) -> str:
    return "" if seconds is None else dora_charts.duration(seconds)
