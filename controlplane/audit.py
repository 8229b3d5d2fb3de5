"""The one helper every state-changing action calls to leave an audit row."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models

from controlplane.middleware import current_request_id
from controlplane.models import AuditEvent

Actor = User | AnonymousUser | str | None


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
    user = actor if isinstance(actor, User) else None
    if user is not None:
        name = user.get_username()
    elif isinstance(actor, str):
        name = actor
    else:
        name = "anonymous"
    return AuditEvent.objects.create(
        actor=user,
        actor_name=name,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        outcome=outcome,
        request_id=current_request_id(),
        detail=detail,
    )
