"""Filters shared by the HTML audit page and the audit API."""

from __future__ import annotations

import django_filters
from django import forms

from controlplane.models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """Narrow the audit log by action, actor, target, outcome and time range."""

    action = django_filters.CharFilter(lookup_expr="exact")
    actor = django_filters.CharFilter(
        field_name="actor_name", lookup_expr="exact", label="Actor"
    )
    target_type = django_filters.CharFilter(lookup_expr="exact")
    target_id = django_filters.CharFilter(lookup_expr="exact")
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        label="From",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    created_before = django_filters.IsoDateTimeFilter(
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
