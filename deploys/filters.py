"""FilterSets for deploy runs (shared by the deploys page and the API) and freeze
windows."""

from __future__ import annotations

import django_filters
from django import forms

from controlplane.filters import UTCIsoDateTimeFilter
from deploys.models import DeployRun, FreezeWindow, WebhookDelivery


class DeployRunFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """Narrow deploys by environment, state, requester, ref and time range."""

    environment = django_filters.CharFilter(
        field_name="environment__name", lookup_expr="exact"
    )
    state = django_filters.MultipleChoiceFilter(choices=DeployRun.State.choices)
    requester = django_filters.CharFilter(
        field_name="requester_name", lookup_expr="exact"
    )
    ref = django_filters.CharFilter(lookup_expr="exact")
    created_after = UTCIsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    created_before = UTCIsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    class Meta:
        model = DeployRun
        fields = [
            "environment",
            "state",
            "requester",
            "ref",
            "created_after",
            "created_before",
        ]


class FreezeWindowFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """Narrow freeze windows by environment (its name) and kind."""

    environment = django_filters.CharFilter(
        field_name="environment__name",
        lookup_expr="exact",
        help_text="Windows of this environment (its name).",
    )
    kind = django_filters.ChoiceFilter(
        choices=FreezeWindow.Kind.choices, help_text="one_off or weekly."
    )

    class Meta:
        model = FreezeWindow
        fields = ["environment", "kind"]


class WebhookDeliveryFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """Narrow webhook deliveries by event, outcome and time received."""

    event = django_filters.CharFilter(lookup_expr="exact")
    outcome = django_filters.MultipleChoiceFilter(
        choices=WebhookDelivery.Outcome.choices
    )
    received_after = UTCIsoDateTimeFilter(
        field_name="received_at",
        lookup_expr="gte",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    received_before = UTCIsoDateTimeFilter(
        field_name="received_at",
        lookup_expr="lt",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    class Meta:
        model = WebhookDelivery
        fields = ["event", "outcome", "received_after", "received_before"]
