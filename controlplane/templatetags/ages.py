"""How the UI says when something happened: "just now", "12 s ago", "4 min ago",
"3 h ago", and past a day the absolute time, never "0 minutes ago"."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()

JUST_NOW_SECONDS = 5


def describe_age(then: datetime | None, now: datetime | None = None) -> str:
    if then is None:
        return "never"
    now = now or timezone.now()
    seconds = int((now - then).total_seconds())
    if seconds < -JUST_NOW_SECONDS:
        return then.strftime("%Y-%m-%d %H:%M UTC")
    if seconds < JUST_NOW_SECONDS:
        return "just now"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    if seconds < 24 * 3600:
        return f"{seconds // 3600} h ago"
    return then.strftime("%Y-%m-%d %H:%M UTC")


@register.filter
def ago(then: datetime | None, now: datetime | None = None) -> str:
    """``{{ run.created_at|ago:now }}``: the age in words (``now`` defaults to the
    render time)."""
    return describe_age(then, now)


@register.filter
def duration(seconds: float | None) -> str:
    """A length of time: "45 s", "12 min", "3 h 20 min", "2 d 4 h"."""
    if seconds is None:
        return "–"
    total = max(0, int(seconds))
    if total < 120:
        return f"{total} s"
    minutes = total // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def since(then: datetime | None, now: datetime | None = None) -> str:
    """``{{ runner.state_since|since:now }}``: how long since ``then``, as a
    duration ("7 s", "12 min")."""
    if then is None:
        return "–"
    return duration(((now or timezone.now()) - then).total_seconds())
