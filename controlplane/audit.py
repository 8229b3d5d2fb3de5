"""The one helper every state-changing action calls to leave an audit row."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models

from controlplane.models import AuditEvent
from controlplane.request_id import current_request_id

Actor = User | AnonymousUser | str | None


def actor_name(actor: Actor) -> str:
    """The name an actor is recorded under: a user's username, a system actor's
    name as given, "anonymous" for an anonymous user or no actor at all."""
    if isinstance(actor, User):
        return actor.get_username()
    if isinstance(actor, str):
        return actor
    return "anonymous"


def record(
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    *,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    **detail: Any,
) -> AuditEvent:
    """Write an audit row. ``actor`` is a user, or a name for system actors
    (``"beat"``, ``"github-webhook"``). ``detail`` must never carry a secret value."""
    return AuditEvent.objects.create(
        actor=actor if isinstance(actor, User) else None,
        actor_name=actor_name(actor),
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        outcome=outcome,
        request_id=current_request_id(),
        detail=detail,
    )
