"""Secret rotation's panel on the home page's status board: the secrets overdue or
missing (the SecretOverdue and SecretMissing rules), most urgent first."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from django.urls import reverse

from controlplane.board import OpenAlert, PanelData
from rotations.models import URGENCY, SecretRotationSchedule, Status

NAMED = 6
PROBLEMS = (Status.OVERDUE, Status.MISSING)


def secrets_panel(now: datetime) -> PanelData:
    """One query: schedules are an organisation's secrets (tens, not a fleet), so
    their status is judged here with ``status_at``, the rule the SQL of
    ``with_status`` also follows, rather than compiled into SQL twice."""
    schedules = list(
        SecretRotationSchedule.objects.select_related("environment").only(
            "pk",
            "name",
            "scope",
            "repository",
            "environment__name",
            "environment__repository",
            "present",
            "last_checked_at",
            "next_due",
            "warn_at",
        )
    )
    statuses = {schedule.pk: schedule.status_at(now) for schedule in schedules}
    for schedule in schedules:
        schedule.status = statuses[schedule.pk]  # type: ignore[attr-defined]
    tally = Counter(statuses.values())
    counts = {
        "overdue": tally[Status.OVERDUE],
        "missing": tally[Status.MISSING],
        "due_soon": tally[Status.DUE_SOON],
    }
    far = now + timedelta(days=36500)
    urgent = sorted(
        (s for s in schedules if statuses[s.pk] in PROBLEMS),
        key=lambda s: (URGENCY[statuses[s.pk]], s.next_due or far, s.name, s.pk),
    )[:NAMED]
    base = reverse("rotations:secret-list")
    alerts = []
    for schedule in urgent:
        if statuses[schedule.pk] == Status.MISSING:
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
