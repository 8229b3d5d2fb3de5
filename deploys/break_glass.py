"""Break glass: an admin's deploy, with a reason, past a freeze window or the deploy
rules (``deploys.rules``). Recorded on the deploy's timeline (``break_glass``, whose
detail names what was broken: ``freeze`` and ``window``, ``rules``) and audited as
``deploy.break_glass``; the gate lets such a run past what was broken only."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from controlplane import audit
from deploys.models import DeployEvent, DeployRun, FreezeWindow
from deploys.rules import Refusal


def record(
    user: User | AnonymousUser,
    run: DeployRun,
    reason: str,
    window: FreezeWindow | None,
    broken: list[Refusal],
) -> None:
    """Write the event and the audit row, in the caller's transaction."""
    what = [] if window is None else ["freeze"]
    what += [refusal.name for refusal in broken]
    detail: dict[str, Any] = {}
    if window is not None:
        detail = {"freeze": window.reason, "window": window.pk}
    if broken:
        detail["rules"] = [refusal.code for refusal in broken]
    DeployEvent.objects.create(
        run=run,
        kind=DeployEvent.Kind.BREAK_GLASS,
        message=f"{' and '.join(what)} broken by {run.requester_name}: {reason}",
        detail=detail,
        created_at=run.created_at,
    )
    audit.record(
        user,
        "deploy.break_glass",
        run,
        **{key: value for key, value in detail.items() if key != "window"},
        reason=reason,
    )
