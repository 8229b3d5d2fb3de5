"""The gate's wait for approvals in the control plane (``deploys.signoff``).

A deploy needing approvals waits at the gate, after the freeze check and before
anything else: not dispatched, and not on the gate's runner clock (the gate timeout
counts from when the approvals are in). Its timeline says "awaiting approvals in the
control plane: 1 of 2 (bob), from any SRE but alice"; the notification scanner
turns that into a message with a link to approve. An approval wakes the deploy; the
gate also looks again every ``SIGNOFF_RECHECK`` (a freeze that begins meanwhile
fails it as ``frozen``, like any deploy at the gate) and when an approval expires.
An approval that expires before the dispatch no longer counts: the deploy waits
again, saying whose expired. Once dispatched, a failover does not ask again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from deploys.engine.common import Kind, Run, event
from deploys.models import DeployRun
from deploys.signoff import verdict

# How often a deploy awaiting approvals is looked at without being woken.
SIGNOFF_RECHECK = timedelta(seconds=60)


def hold(run: DeployRun, now: datetime) -> bool:
    """Whether the gate holds the run for approvals now (it has its next deadline
    then). The first pass with the approvals in records ``signed_off`` and starts
    the gate's runner clock."""
    if run.timeout("signoffs_required") <= 0 or run.attempts.exists():
        return False
    judged = verdict(run, now)
    if judged.break_glass:
        return False
    last = (
        run.events.filter(kind__in=(Kind.SIGNED_OFF, Kind.GATE_WAITING))
        .order_by("-created_at", "-pk")
        .values_list("kind", "detail")
        .first()
    )
    if judged.satisfied:
        if last is not None and last[0] == Kind.SIGNED_OFF:
            return False
        with transaction.atomic():
            moved = DeployRun.objects.filter(pk=run.pk, state=Run.GATING).update(
                gate_started_at=now
            )
            if moved:
                event(
                    run,
                    Kind.SIGNED_OFF,
                    f"{judged.why} in the control plane",
                    now,
                    approvals=[a.by for a in judged.approvals],
                )
        run.gate_started_at = now
        return False
    detail = {"signoff": judged.as_dict()}
    expiry = judged.earliest_expiry
    deadline = now + SIGNOFF_RECHECK
    if expiry is not None and expiry < deadline:
        deadline = expiry
    with transaction.atomic():
        if last is None or last[0] != Kind.GATE_WAITING or last[1] != detail:
            event(run, Kind.GATE_WAITING, judged.why, now, signoff=detail["signoff"])
        # The runner clock has not started: the gate timeout counts from the end
        # of this wait.
        DeployRun.objects.filter(pk=run.pk, state=Run.GATING).update(
            gate_started_at=now, next_check_at=deadline
        )
    return True
