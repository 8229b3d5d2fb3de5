"""Secret rotation's panel on the home page's status board: the secrets overdue or
missing (the SecretOverdue and SecretMissing rules), most urgent first."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q
from django.urls import reverse

from controlplane.board import OpenAlert, PanelData
from rotations.models import SecretRotationSchedule, Status

NAMED = 6


def secrets_panel(now: datetime) -> PanelData:
    """Two queries: the counts by problem, and the most urgent schedules by name."""
    problems = [Status.OVERDUE, Status.MISSING]
    schedules = SecretRotationSchedule.objects.with_status(now)
    counts = schedules.aggregate(
        overdue=Count("pk", filter=Q(status=Status.OVERDUE)),
        missing=Count("pk", filter=Q(status=Status.MISSING)),
        due_soon=Count("pk", filter=Q(status=Status.DUE_SOON)),
    )
    urgent = list(
        schedules.filter(status__in=problems)  # type: ignore[misc]
        .select_related("environment")
        .order_by("urgency", "next_due", "name", "pk")[:NAMED]
    )
    base = reverse("rotations:secret-list")
    alerts = []
    for schedule in urgent:
        if schedule.status == Status.MISSING:  # type: ignore[attr-defined]
            alerts.append(
                OpenAlert(
                    "SecretMissing",
                    "critical",
                    f"Secret {schedule.name} ({schedule.target_label}) is missing",
                    "secret-missing",
                    reverse("rotations:secret-detail", args=[schedule.pk]),
                )
            )
        else:
            alerts.append(
                OpenAlert(
                    "SecretOverdue",
                    "warning",
                    f"Secret {schedule.name} ({schedule.target_label}) is overdue "
                    "for rotation",
                    "secret-overdue",
                    reverse("rotations:secret-detail", args=[schedule.pk]),
                )
            )
    hidden = counts["overdue"] + counts["missing"] - len(urgent)
    if hidden > 0:
        alerts.append(
            OpenAlert(
                "SecretOverdue",
                "warning",
                f"{hidden} more secret(s) overdue or missing",
                "secret-overdue",
                base,
            )
        )
    return PanelData(
        {"secrets_url": base, "secret_counts": counts, "urgent_secrets": urgent},
        alerts,
    )
