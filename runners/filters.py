"""The one FilterSet for runners, shared by the fleet page and ``/api/v1/runners/``."""

from __future__ import annotations

import json

import django_filters
from django import forms
from django.db.models import F, Q, QuerySet
from django.db.models.lookups import Exact

from controlplane.filters import StrictBooleanFilter
from runners.hygiene_fields import VersionStatus
from runners.models import Runner
from runners.states import RULES, Reason, State

OUTDATED_CHOICES = [
    ("true", "Outdated (any rule)"),
    (VersionStatus.BELOW_MINIMUM, "Below the minimum"),
    (VersionStatus.BEHIND_LATEST, "Behind the latest release"),
    ("false", "Current or unknown"),
]

# Flags on the runner that are not health reasons (they leave its state alone) but
# answer the same question, "what is wrong with this runner?": the reason filter
# offers them after the reasons, so one list finds every flagged runner.
FLAG_REASONS = {
    "version_outdated": (
        "runner version outdated",
        ~Q(version_outdated=VersionStatus.CURRENT),
    ),
    "missing_name_label": ("name label missing", Q(missing_name_label=True)),
}
REASON_CHOICES = [(value, label) for value, label in Reason.choices if value] + [
    (value, label) for value, (label, _) in FLAG_REASONS.items()
]

REMOVED_CHOICES = [
    ("false", "Active"),
    ("true", "Removed from GitHub"),
    ("any", "Active and removed"),
]


def reason_lookup(value: str) -> Q:
    """Runners flagged with ``value``: a flag of ``FLAG_REASONS``, or a health
    reason that is the runner's primary one or among those its latest observation
    gives (what its page lists: a failing canary behind a low disk, say).

    A reason is among them when one of its rules for an unhealthy or degraded state
    matches the observed flags (``runners.states.evaluate_flags``), tested here on
    the bits in SQL."""
    if value in FLAG_REASONS:
        return FLAG_REASONS[value][1]
    lookup = Q(reason=value)
    for rule in RULES:
        if rule.reason != value or rule.state not in (State.UNHEALTHY, State.DEGRADED):
            continue
        required, forbidden = int(rule.required), int(rule.forbidden)
        matches = Q(Exact(F("observed_flags").bitand(required), required))
        if forbidden:
            matches &= Q(Exact(F("observed_flags").bitand(forbidden), 0))
        lookup |= matches
    return lookup


def label_lookup(label: str) -> Q:
    """Runners carrying ``label``. GitHub matches labels case-insensitively, so this
    does too: a case-insensitive match on the quoted label inside the stored JSON
    list works the same on SQLite and PostgreSQL (neither needs a JSON index for a
    fleet of 10,000 rows)."""
    quoted = json.dumps(label.strip())
    return Q(labels__icontains=quoted)


class RunnerFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """Narrow the fleet by state, reason, label, environment, drain flag, runner
    version and its rules, a missing name label, removal and a search.

    Removed runners are kept with their history but hidden unless ``removed`` asks
    for them (``true``: only those, ``any``: everything)."""

    q = django_filters.CharFilter(
        method="search",
        label="Search",
        help_text="Part of a runner's name, or one of its labels.",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "name or label"}
        ),
    )
    state = django_filters.ChoiceFilter(choices=State.choices, empty_label="Any")
    reason = django_filters.ChoiceFilter(
        method="filter_reason",
        choices=REASON_CHOICES,
        empty_label="Any",
        help_text="A health reason (the primary one or another the latest "
        "observation gives), or a flag: version_outdated, missing_name_label.",
    )
    label = django_filters.CharFilter(
        method="filter_label", label="Label", help_text="Runners carrying this label."
    )
    environment = django_filters.CharFilter(
        field_name="pool_entries__environment__name",
        label="Environment",
        help_text="Runners in this deploy environment's pool (its name).",
    )
    drained = StrictBooleanFilter(
        widget=forms.Select(
            choices=[("", "Any"), ("true", "Drained"), ("false", "In rotation")]
        ),
        help_text="true: only drained runners; false: only runners in rotation.",
    )
    version = django_filters.CharFilter(
        method="filter_version",
        label="Version",
        help_text="Runners on this runner version (e.g. 2.330.0); unknown: none "
        "reported.",
        widget=forms.TextInput(attrs={"placeholder": "2.330.0"}),
    )
    version_outdated = django_filters.ChoiceFilter(
        method="filter_outdated",
        label="Version rules",
        choices=OUTDATED_CHOICES,
        empty_label="Any",
        help_text="true: runners any version rule flags; below_minimum or "
        "behind_latest: that rule; false: the others.",
    )
    missing_name_label = StrictBooleanFilter(
        label="Name label",
        widget=forms.Select(
            choices=[("", "Any"), ("true", "Missing"), ("false", "Carried")]
        ),
        help_text="true: pool runners without their own name as a label.",
    )
    removed = django_filters.ChoiceFilter(
        method="filter_removed",
        label="Removed",
        choices=REMOVED_CHOICES,
        empty_label="Active",
        help_text="false (default): runners GitHub lists; true: removed ones; any: both.",
    )

    class Meta:
        model = Runner
        fields = [
            "q",
            "state",
            "reason",
            "label",
            "environment",
            "drained",
            "version",
            "version_outdated",
            "missing_name_label",
            "removed",
        ]

    def search(
        self, queryset: QuerySet[Runner], name: str, value: str
    ) -> QuerySet[Runner]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | label_lookup(value))

    def filter_reason(
        self, queryset: QuerySet[Runner], name: str, value: str
    ) -> QuerySet[Runner]:
        return queryset.filter(reason_lookup(value))

    def filter_label(
        self, queryset: QuerySet[Runner], name: str, value: str
    ) -> QuerySet[Runner]:
        if not value.strip():
            return queryset
        return queryset.filter(label_lookup(value))

    def filter_version(
        self, queryset: QuerySet[Runner], name: str, value: str
    ) -> QuerySet[Runner]:
        value = value.strip().removeprefix("v")
        if not value:
            return queryset
        return queryset.filter(runner_version="" if value == "unknown" else value)

    def filter_outdated(
        self, queryset: QuerySet[Runner], name: str, value: str
    ) -> QuerySet[Runner]:
        if value == "true":
            return queryset.exclude(version_outdated=VersionStatus.CURRENT)
        if value == "false":
            return queryset.filter(version_outdated=VersionStatus.CURRENT)
        return queryset.filter(version_outdated=value)

    def filter_removed(
        self, queryset: QuerySet[Runner], name: str, value: str
    ) -> QuerySet[Runner]:
        # Only called for a non-empty value; the default is applied in filter_queryset.
        if value == "true":
            return queryset.filter(removed_at__isnull=False)
        if value == "any":
            return queryset
        return queryset.filter(removed_at__isnull=True)

    def filter_queryset(self, queryset: QuerySet[Runner]) -> QuerySet[Runner]:
        if not self.form.cleaned_data.get("removed"):
            queryset = queryset.filter(removed_at__isnull=True)
        result: QuerySet[Runner] = super().filter_queryset(queryset)
        return result
