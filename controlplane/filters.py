"""Filters shared by the HTML audit page and the audit API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from controlplane.models import AuditEvent


class UTCIsoDateTimeField(IsoDateTimeField):  # type: ignore[misc]
    """An ISO 8601 time, converted to UTC. PostgreSQL refuses offsets beyond ±15:59,
    which ISO 8601 allows, so the offset must not reach the query."""

    def clean(self, value: Any) -> datetime | None:
        cleaned: datetime | None = super().clean(value)
        if cleaned is None:
            return None
        try:
            return cleaned.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("This time is out of range.") from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):  # type: ignore[misc]
    """``IsoDateTimeFilter`` whose value is in UTC whatever offset the caller sent."""

    field_class = UTCIsoDateTimeField


class AuditEventFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """Narrow the audit log by action, actor, target, outcome and time range."""

    action = django_filters.CharFilter(lookup_expr="exact")
    actor = django_filters.CharFilter(
        field_name="actor_name", lookup_expr="exact", label="Actor"
    )
    target_type = django_filters.CharFilter(lookup_expr="exact")
    target_id = django_filters.CharFilter(lookup_expr="exact")
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    created_after = UTCIsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        label="From",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    created_before = UTCIsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        label="Until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    class Meta:
        model = AuditEvent
        fields = [
            "action",
            "actor",
            "target_type",
            "target_id",
            "outcome",
            "created_after",
            "created_before",
        ]
