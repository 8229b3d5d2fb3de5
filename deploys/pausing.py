"""Pausing and resuming an environment's deploys: the environment page's buttons
and the API's actions call these (SREs, with a reason; audited as
``environment.pause`` and ``environment.resume``).

A paused environment refuses new deploy requests and holds its queued ones; a
deploy already past the gate carries on."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from controlplane import audit
from deploys.models import DeployRun, Environment

REASON_MAX = 500


class PauseError(Exception):
    """A pause or resume that cannot be done as asked; ``message`` says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def clean_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise PauseError("give a reason: it is shown wherever deploys are refused")
    if len(reason) > REASON_MAX:
        raise PauseError(f"the reason is too long (at most {REASON_MAX} characters)")
    return reason


def pause(actor: audit.Actor, env: Environment, reason: str) -> Environment:
    """Pause ``env``'s deploys with ``reason``; pausing a paused environment again
    replaces its reason."""
    reason = clean_reason(reason)
    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=env.pk)
        was = env.paused_reason if env.paused else None
        env.paused = True
        env.paused_reason = reason
        env.paused_by = audit.actor_name(actor)
        env.paused_at = timezone.now()
        env.save(update_fields=["paused", "paused_reason", "paused_by", "paused_at"])
        audit.record(actor, "environment.pause", env, reason=reason, was=was)
    return env


def resume(actor: audit.Actor, env: Environment, note: str = "") -> Environment:
    """Resume ``env``'s deploys; its queued deploys go ahead in order."""
    note = " ".join(note.split())[:REASON_MAX]
    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=env.pk)
        if not env.paused:
            raise PauseError(f"{env.name} is not paused")
        reason = env.paused_reason
        env.paused = False
        env.paused_reason = ""
        env.paused_by = ""
        env.paused_at = None
        env.save(update_fields=["paused", "paused_reason", "paused_by", "paused_at"])
        audit.record(actor, "environment.resume", env, note=note, paused_reason=reason)
        DeployRun.objects.wake_next_queued(env.pk)
    return env
