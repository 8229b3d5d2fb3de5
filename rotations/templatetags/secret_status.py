"""``{{ value|status_label }}``: a secret's status in words ("due soon"), for the
badges on every page that shows one; the raw value stays in classes and data
attributes, where scripts and styles read it."""

from __future__ import annotations

from django import template

from rotations.models import Status

register = template.Library()


@register.filter
def status_label(value: str) -> str:
    """The human label of a status value (the value itself if it names none)."""
    try:
        return str(Status(value).label)
    except ValueError:
        return value
