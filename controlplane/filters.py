"""Filters shared by the HTML audit page and the audit API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

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


class StrictBooleanField(forms.NullBooleanField):
    """``true`` or ``false`` (the schema's spelling), or nothing for "any". Django's
    field reads every other word as "any", so ``?drained=null`` silently listed
    every runner; here it is an error naming the parameter."""

    # None is "any", as in NullBooleanField; the stubs type it after BooleanField.
    def to_python(self, value: Any) -> bool | None:  # type: ignore[override]
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return bool(value == "true")
        raise forms.ValidationError("Must be true or false.", code="invalid")

    def validate(self, value: Any) -> None:
        return None


class StrictBooleanFilter(django_filters.BooleanFilter):  # type: ignore[misc]
    field_class = StrictBooleanField


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


class FilterBackend(DjangoFilterBackend):  # type: ignore[misc]
    """django-filter for the API, where an empty value is an error, not "any".

    HTML filter forms send every field, empty ones included, so the FilterSets
    read ``?state=`` as "any state". An API client that sends ``?created_after=``
    means something it did not get; outside free-text filters (where an empty
    string is a valid string) that is a 400 naming the parameter."""

    def get_filterset(
        self, request: Request, queryset: QuerySet[Any], view: Any
    ) -> django_filters.FilterSet | None:
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            empty = [
                name
                for name, spec in filterset.filters.items()
                if request.query_params.get(name) == ""
                and not isinstance(spec, django_filters.CharFilter)
            ]
            if empty:
                raise ValidationError(
                    {
                        name: ["must not be empty; leave it out for any"]
                        for name in empty
                    }
                )
        return filterset
