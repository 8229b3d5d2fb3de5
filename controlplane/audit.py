"""The one helper every state-changing action calls to leave an audit row.

Action names follow one scheme, ``object.verb``: the kind of object acted on and
what was done to it, each lower-case words joined by ``_`` (``runner.drain``,
``freeze_window.update``, ``session.login``). A refused or failed attempt keeps the
action's name and says so in ``outcome``. The actions recorded today:

- ``session.login``, ``session.logout``, ``session.expire``; ``login.lockout``,
  ``api_token.lockout``, ``heartbeat.lockout``, ``sd_token.lockout``
- ``user.create``, ``user.password_change``, ``api_token.issue``
- ``runner.drain``, ``runner.undrain``, ``runner.token_issue``,
  ``runner.token_revoke``, ``runner.update``, ``runner.delete``,
  ``runner.diagnostics_requested``, ``runner.agent_install_requested``,
  ``runner.diagnostics_reported``, ``runner.trust`` (trusted for deploys for a
  bounded time), ``runner.untrust``,
  ``runner.remove`` (a stale runner removed from GitHub and the registry)
- ``environment.create``, ``environment.update``, ``environment.delete``,
  ``environment.pool_update``, ``environment.pause``, ``environment.resume``,
  ``environment.protection_review`` (GitHub asked about a run started outside the
  control plane; the answer sent as its custom deployment protection rule)
- ``freeze_window.create``, ``freeze_window.update``, ``freeze_window.delete``
- ``deploy.request`` (refused ones with outcome ``denied``), ``deploy.cancel``,
  ``deploy.break_glass``, ``deploy.rollback``, ``deploy.review`` (an approval or
  rejection sent to GitHub), ``deploy.signoff_approve``, ``deploy.signoff_reject``
  (an approval or rejection in the control plane; refused ones with outcome
  ``denied``)
- ``secret.rotate``, ``secret.audit``, ``secret.detect_external_rotation``
- ``secret_schedule.create``, ``secret_schedule.update``,
  ``secret_schedule.delete``, ``secret_schedule.import``
- ``periodic_task.create``, ``periodic_task.update``, ``periodic_task.delete``,
  ``periodic_task.enable``, ``periodic_task.disable``, ``periodic_task.toggle``,
  ``periodic_task.run``; ``interval_schedule.*`` and ``crontab_schedule.*`` alike
- ``inventory.load`` (an intended inventory loaded from the file, an admin upload
  or the API; a file or API body that cannot be read with outcome ``failure``)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models

from controlplane.models import AuditEvent
from controlplane.request_id import current_request_id

Actor = User | AnonymousUser | str | None

ACTION_NAME = re.compile(r"[a-z][a-z_]*\.[a-z][a-z_]*")

# How to link an audited object's page, by its model label ("runners.runner"):
# the apps register these (``register_target_url``), the floor names none of them.
# The function gets the target's id and its recorded name.
TARGET_URLS: dict[str, Callable[[str, str], str]] = {}


def register_target_url(label: str, build: Callable[[str, str], str]) -> None:
    TARGET_URLS[label] = build


def target_url(event: AuditEvent) -> str:
    """The page of the event's target, "" when it has none."""
    build = TARGET_URLS.get(event.target_type)
    if build is None or not event.target_id:
        return ""
    try:
        return build(event.target_id, event.target_repr)
    except Exception:  # a name that no longer makes a valid URL: no link
        return ""


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
    (``"beat"``, ``"github-webhook"``). ``action`` is ``object.verb`` (see the
    module's docstring). ``detail`` must never carry a secret value."""
    if not ACTION_NAME.fullmatch(action):
        raise ValueError(f"audit action {action!r} is not named object.verb")
    return AuditEvent.objects.create(
        # An unsaved user (a test's, a library's placeholder) is named, not linked.
        actor=actor if isinstance(actor, User) and actor.pk is not None else None,
        actor_name=actor_name(actor),
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        outcome=outcome,
        request_id=current_request_id(),
        detail=detail,
    )
