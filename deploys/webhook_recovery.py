"""Asking GitHub again for the webhook deliveries that never reached us.

GitHub never redelivers by itself: while the control plane is down every delivery
fails and stays failed. Its own advice is a scheduled job that reads the hook's
delivery log and redelivers the failed ones, which is :func:`recover`, run by beat
every few minutes:

1. Find the hook: ``GITHUB_WEBHOOK_HOOK_ID``, else the one remembered by an earlier
   pass, else the hook whose URL is ``SITE_URL`` + ``/github/webhook`` (one list call,
   then remembered in :class:`WebhookHook`).
2. Read the delivery log newest first, page by page (cursor pagination), until the
   entries are older than GitHub's 3-day redelivery window or than the point an
   earlier complete pass reached, or the pass's request cap or the API budget's
   reserve is reached.
3. An event (a guid) is missed when none of its log entries succeeded and no
   delivery with that guid is stored here (a delivery we stored and refused, e.g. a
   malformed one answered 400, is not missed: redelivering it would fail forever).
   Ask GitHub to redeliver each missed event, at most
   ``WEBHOOK_REDELIVERY_MAX_ATTEMPTS`` times and not again within
   ``REDELIVERY_BACKOFF`` of the last request.
4. Only a complete pass (no early stop, no refused request) moves the checked
   point forward, so nothing older than it can still need a redelivery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from controlplane.github import (
    GitHubError,
    GitHubGateway,
    GitHubNotFound,
    HookDeliveryInfo,
    HookScope,
    gateway,
)
from deploys.models import WebhookDelivery, WebhookHook, WebhookRedelivery

log = logging.getLogger(__name__)

# GitHub redelivers deliveries made within the last 3 days only.
REDELIVERY_WINDOW = timedelta(days=3)
# Entries may be logged a little out of order: re-read this much before the mark.
MARK_OVERLAP = timedelta(minutes=10)
# A redelivery GitHub accepted takes a moment to arrive; do not ask twice meanwhile.
REDELIVERY_BACKOFF = timedelta(minutes=10)
# Recovery is a background chore: it stops while less than this share of the API
# budget remains, leaving it to deploys and the runner sync.
BUDGET_RESERVE = 0.1
WEBHOOK_PATH = "/github/webhook"


class RecoveryError(Exception):
    """The pass could not run (no hook found, the hook is gone)."""


@dataclass
class RecoveryResult:
    hook_id: int
    requests: int = 0
    entries: int = 0
    missed: int = 0
    redelivered: int = 0
    # Redelivery requests GitHub refused; their events are asked again next pass.
    errors: int = 0
    complete: bool = False
    # Why an incomplete pass stopped early (the request cap or the budget).
    stopped: str = ""


def _scope() -> tuple[HookScope, str]:
    if settings.GITHUB_WEBHOOK_SCOPE == "organization":
        return "organization", settings.GITHUB_ORGANIZATION
    return "repository", settings.GITHUB_REPOSITORY


def _hook(gw: GitHubGateway, scope: HookScope, owner: str) -> tuple[WebhookHook, int]:
    """The hook row to check and how many API requests finding it took."""
    hook_id = settings.GITHUB_WEBHOOK_HOOK_ID
    if hook_id:
        hook, _ = WebhookHook.objects.get_or_create(
            scope=scope, owner=owner, hook_id=hook_id
        )
        return hook, 0
    known = WebhookHook.objects.filter(scope=scope, owner=owner).first()
    if known is not None:
        return known, 0
    wanted = settings.SITE_URL.rstrip("/") + WEBHOOK_PATH
    for info in gw.list_hooks(scope):
        if info.url.rstrip("/") == wanted:
            hook, _ = WebhookHook.objects.get_or_create(
                scope=scope, owner=owner, hook_id=info.id
            )
            return hook, 1
    raise RecoveryError(
        f"no {scope} webhook of {owner} delivers to {wanted}: set "
        "GITHUB_WEBHOOK_HOOK_ID or SITE_URL"
    )


def _budget_low(gw: GitHubGateway) -> bool:
    budget = gw.budget
    if budget.remaining is None or not budget.limit:
        return False
    return budget.remaining < budget.limit * BUDGET_RESERVE


def recover(now: datetime | None = None) -> RecoveryResult:
    """One pass over the hook's delivery log (see the module docstring)."""
    now = now or timezone.now()
    gw = gateway()
    scope, owner = _scope()
    hook, requests = _hook(gw, scope, owner)
    result = RecoveryResult(hook_id=hook.hook_id, requests=requests)
    oldest = now - REDELIVERY_WINDOW
    if hook.checked_until is not None:
        oldest = max(oldest, hook.checked_until - MARK_OVERLAP)
    entries = _read_log(gw, scope, hook, oldest, result)
    newest = max((e.delivered_at for e in entries if e.delivered_at), default=None)
    if result.stopped:
        # Read what we could; redeliver what we found anyway, newest first.
        log.warning("webhook recovery stopped early: %s", result.stopped)
    _redeliver(gw, scope, hook, entries, now, result)
    if not result.stopped and not result.errors:
        result.complete = True
        if newest is not None:
            WebhookHook.objects.filter(pk=hook.pk).update(
                checked_until=newest, updated_at=now
            )
    return result


def _spend(gw: GitHubGateway, result: RecoveryResult) -> bool:
    """Whether one more request fits the pass's cap and the budget reserve."""
    if result.requests >= settings.WEBHOOK_RECOVERY_MAX_REQUESTS:
        result.stopped = (
            f"WEBHOOK_RECOVERY_MAX_REQUESTS ({settings.WEBHOOK_RECOVERY_MAX_REQUESTS}) "
            "reached"
        )
        return False
    if _budget_low(gw):
        result.stopped = (
            f"GitHub API budget below {BUDGET_RESERVE:.0%} "
            f"({gw.budget.remaining} of {gw.budget.limit} left)"
        )
        return False
    result.requests += 1
    return True


def _read_log(
    gw: GitHubGateway,
    scope: HookScope,
    hook: WebhookHook,
    oldest: datetime,
    result: RecoveryResult,
) -> list[HookDeliveryInfo]:
    entries: list[HookDeliveryInfo] = []
    cursor: str | None = None
    while _spend(gw, result):
        try:
            page = gw.list_hook_deliveries(scope, hook.hook_id, cursor=cursor)
        except GitHubNotFound as exc:
            # The hook was deleted (or recreated with a new id): find it again next
            # time instead of reading a log that no longer exists.
            WebhookHook.objects.filter(pk=hook.pk).delete()
            raise RecoveryError(f"hook {hook.hook_id} is gone: {exc}") from None
        fresh = [
            e
            for e in page.deliveries
            if e.delivered_at is None or e.delivered_at >= oldest
        ]
        entries.extend(fresh)
        result.entries += len(fresh)
        if len(fresh) < len(page.deliveries) or page.next_cursor is None:
            break
        cursor = page.next_cursor
    return entries


def _redeliver(
    gw: GitHubGateway,
    scope: HookScope,
    hook: WebhookHook,
    entries: list[HookDeliveryInfo],
    now: datetime,
    result: RecoveryResult,
) -> None:
    by_guid: dict[str, list[HookDeliveryInfo]] = {}
    for entry in entries:
        if entry.guid:
            by_guid.setdefault(entry.guid, []).append(entry)
    failed = {
        guid: max(tries, key=lambda e: (e.delivered_at or now, e.id))
        for guid, tries in by_guid.items()
        if not any(e.succeeded for e in tries)
    }
    if not failed:
        return
    received = set(
        WebhookDelivery.objects.filter(delivery_id__in=failed).values_list(
            "delivery_id", flat=True
        )
    )
    asked = {r.guid: r for r in WebhookRedelivery.objects.filter(guid__in=failed)}
    missed = [entry for guid, entry in failed.items() if guid not in received]
    result.missed = len(missed)
    # Oldest first: events are applied in the order they happened where possible.
    missed.sort(key=lambda e: (e.delivered_at or now, e.id))
    for entry in missed:
        previous = asked.get(entry.guid)
        if previous is not None and (
            previous.attempts >= settings.WEBHOOK_REDELIVERY_MAX_ATTEMPTS
            or previous.last_requested_at > now - REDELIVERY_BACKOFF
        ):
            continue
        if not _spend(gw, result):
            return
        error = ""
        try:
            gw.redeliver_hook_delivery(scope, hook.hook_id, entry.id)
        except GitHubError as exc:
            error = str(exc)[:500]
            result.errors += 1
            log.warning("redelivery of %s failed: %s", entry.guid, error)
        else:
            result.redelivered += 1
        if previous is None:
            WebhookRedelivery.objects.create(
                guid=entry.guid,
                event=entry.event[:50],
                github_delivery_id=entry.id,
                attempts=1,
                first_requested_at=now,
                last_requested_at=now,
                error=error,
            )
        else:
            WebhookRedelivery.objects.filter(pk=previous.pk).update(
                attempts=F("attempts") + 1,
                github_delivery_id=entry.id,
                last_requested_at=now,
                error=error,
            )
