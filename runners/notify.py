"""Runner events SREs need to hear about, for the notification outbox: a runner
became unhealthy or recovered."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from controlplane.notifications import Draft, Kind, Scanner, draft
from runners.models import RunnerEvent, State


def runner_events() -> models.QuerySet[RunnerEvent]:
    return RunnerEvent.objects.select_related("runner")


def from_runner_event(event: RunnerEvent) -> Draft | None:
    if event.kind != RunnerEvent.Kind.STATE_CHANGE:
        return None
    runner = event.runner
    link = reverse("runners:detail", args=[runner.name])
    fields = {
        "runner": runner.name,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "reasons": list(event.reasons or []),
    }
    if event.to_state == State.UNHEALTHY:
        reason = event.reason
        return draft(
            Kind.RUNNER_UNHEALTHY,
            f"Runner {runner.name} is unhealthy" + (f" ({reason})" if reason else ""),
            event.message or f"{event.from_state} → unhealthy",
            link,
            f"runner-unhealthy:{event.pk}",
            event.runbook_slug,
            None,
            event.created_at,
            fields,
        )
    if event.from_state == State.UNHEALTHY:
        return draft(
            Kind.RUNNER_RECOVERED,
            f"Runner {runner.name} recovered ({event.to_state})",
            event.message or f"unhealthy → {event.to_state}",
            link,
            f"runner-recovered:{event.pk}",
            "",
            None,
            event.created_at,
            fields,
        )
    return None


def collapse_storms(drafts: list[Draft]) -> list[Draft]:
    """One summary per kind when more runners changed at once than
    ``NOTIFY_RUNNER_STORM``: a fleet-wide blip is one message, not hundreds."""
    kept: list[Draft] = []
    for kind, verb in (
        (Kind.RUNNER_UNHEALTHY, "became unhealthy"),
        (Kind.RUNNER_RECOVERED, "recovered"),
    ):
        group = [d for d in drafts if d.kind == kind]
        if len(group) <= settings.NOTIFY_RUNNER_STORM:
            continue
        names = sorted({str(d.fields.get("runner", "")) for d in group})
        shown = ", ".join(names[:20]) + (
            f" and {len(names) - 20} more" if len(names) > 20 else ""
        )
        reasons = sorted({r for d in group for r in d.fields.get("reasons", [])[:1]})
        kept.append(
            draft(
                kind,
                f"{len(names)} runners {verb}",
                shown,
                reverse("runners:fleet"),
                # The batch's first and last keys: a rescan of the same rows
                # produces the same summary key.
                f"{kind}-storm:{group[0].dedupe_key}:{group[-1].dedupe_key}",
                group[0].runbook,
                None,
                group[-1].created_at,
                {"runners": len(names), "reasons": reasons},
            )
        )
        drafts = [d for d in drafts if d.kind != kind]
    return drafts + kept


SCANNER = Scanner("runner_events", runner_events, from_runner_event, collapse_storms)
