"""Asking GitHub again for the webhook deliveries that never reached us.

GitHub never redelivers by itself: while the control plane is down every delivery
fails and stays failed. Its own advice is a scheduled job that reads the hook's
delivery log and redelivers the failed ones, which is :func:`recover`, run by beat
every few minutes:

1. Find the hook: ``GITHUB_WEBHOOK_HOOK_ID``, else the one remembered by an earlier
   pass, else the hook whose URL is ``SITE_URL`` + ``/github/webhook`` (one list call,
   then remembered in :class:`WebhookHook`).
2. Scan the delivery log newest first, page by page (cursor pagination), down to
   GitHub's 3-day redelivery window or to where an earlier complete scan began. On
   each page, an event (a guid) is missed when its newest entry failed and no
   delivery with that guid is stored here (a delivery we stored and refused, e.g. a
   malformed one answered 400, is not missed: redelivering it would fail forever).
   Ask GitHub to redeliver each missed event, at most
   ``WEBHOOK_REDELIVERY_MAX_ATTEMPTS`` times and not again within
   ``REDELIVERY_BACKOFF`` of the last request.
3. A pass stops at ``WEBHOOK_RECOVERY_MAX_REQUESTS`` requests or when the API budget
   runs low. The scan then goes on from GitHub's cursor next pass, after a look at
   what failed since, so a backlog longer than one pass still shrinks every pass.
4. Only a complete scan with no refused request moves the checked point forward,
   so nothing older than it can still need a redelivery.
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
    GitHubValidationError,
    HookDeliveryInfo,
    HookScope,
    gateway,
)
from deploys.models import WebhookDelivery, WebhookHook, WebhookRedelivery

log = logging.getLogger(__name__)

# GitHub redelivers deliveries made within the last 3 days only.
REDELIVERY_WINDOW = timedelta(days=3)
# Entries may be logged a little out of order (a delivery is logged when its
# attempt ends, up to GitHub's 10 s timeout after it began): re-read this much
# before the mark. Every pass pays for it in log pages, so it stays small: at 10
# minutes a 5-minute pass read three times the pages it needed (bench.budget).
MARK_OVERLAP = timedelta(minutes=1)
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


@dataclass
class _Scan:
    finished: bool
    # The newest delivery a scan from the top saw (its id and time).
    top_id: int | None = None
    top: datetime | None = None
    # Where an unfinished scan goes on: the page it did not finish (its cursor, ""
    # for the first) and, within it, the ids still to do (below this one).
    cursor: str = ""
    below_id: int | None = None


def recover(now: datetime | None = None) -> RecoveryResult:
    """One pass over the hook's delivery log (see the module docstring)."""
    now = now or timezone.now()
    gw = gateway()
    scope, owner = _scope()
    hook, requests = _hook(gw, scope, owner)
    result = RecoveryResult(hook_id=hook.hook_id, requests=requests)
    bottom = now - REDELIVERY_WINDOW
    if hook.checked_until is not None:
        bottom = max(bottom, hook.checked_until - MARK_OVERLAP)
    seen: set[str] = set()
    top_id, top = hook.scan_top_id, hook.scan_top
    if hook.scan_top_id is not None:
        # A backlog is half done: first what was logged since, then on from where
        # the last pass stopped.
        head = _scan(gw, scope, hook, bottom, now, result, seen, above=top_id)
        if not head.finished:
            return _stopped(result)  # the same backlog waits for the next pass
        if head.top_id is not None:
            top_id, top = head.top_id, head.top
        tail = _scan(
            gw,
            scope,
            hook,
            bottom,
            now,
            result,
            seen,
            cursor=hook.resume_cursor,
            below=hook.resume_below_id,
        )
    else:
        tail = _scan(gw, scope, hook, bottom, now, result, seen)
        top_id, top = tail.top_id, tail.top
    if not tail.finished:
        WebhookHook.objects.filter(pk=hook.pk).update(
            resume_cursor=tail.cursor,
            resume_below_id=tail.below_id,
            scan_top_id=top_id,
            scan_top=top,
            updated_at=now,
        )
        return _stopped(result)
    update: dict[str, object] = {
        "resume_cursor": "",
        "resume_below_id": None,
        "scan_top_id": None,
    }
    if not result.errors:
        # Refused redeliveries are asked again by the next full scan.
        result.complete = True
        if top is not None:
            update["checked_until"] = top
    WebhookHook.objects.filter(pk=hook.pk).update(updated_at=now, **update)
    return result


def _stopped(result: RecoveryResult) -> RecoveryResult:
    if result.stopped:
        log.warning("webhook recovery stopped early: %s", result.stopped)
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


def _scan(
    gw: GitHubGateway,
    scope: HookScope,
    hook: WebhookHook,
    bottom: datetime,
    now: datetime,
    result: RecoveryResult,
    seen: set[str],
    *,
    cursor: str = "",
    below: int | None = None,
    above: int | None = None,
) -> _Scan:
    """Read the log from ``cursor`` ("": the newest page) down to ``bottom``, asking
    for each missed delivery's redelivery page by page, newest first. Only ids
    under ``below`` count on the first page read, only ids over ``above`` at all.

    Newest first because the latest event of a run wakes its deploy, which then
    reads the run's true state from GitHub (older events cannot move a job
    backwards): a long outage's deploys finish within the first passes.
    """
    scan = _Scan(finished=False, cursor=cursor, below_id=below)
    while _spend(gw, result):
        try:
            page = gw.list_hook_deliveries(scope, hook.hook_id, cursor=cursor or None)
        except GitHubNotFound as exc:
            # The hook was deleted (or recreated with a new id): find it again next
            # time instead of reading a log that no longer exists.
            WebhookHook.objects.filter(pk=hook.pk).delete()
            raise RecoveryError(f"hook {hook.hook_id} is gone: {exc}") from None
        except GitHubValidationError:
            if not cursor:
                raise
            # An expired cursor: the next pass scans again from the top.
            log.warning("webhook log cursor %s refused; scanning afresh", cursor)
            return _Scan(finished=False, below_id=None)
        recent = [
            e
            for e in page.deliveries
            if (e.delivered_at is None or e.delivered_at >= bottom)
            and (above is None or e.id > above)
        ]
        if not cursor and scan.top_id is None and recent:
            scan.top_id = max(e.id for e in recent)
            scan.top = max(
                (e.delivered_at for e in recent if e.delivered_at), default=None
            )
        todo = [e for e in recent if scan.below_id is None or e.id < scan.below_id]
        result.entries += len(todo)
        stopped_at = _redeliver(gw, scope, hook, todo, now, result, seen)
        if stopped_at is not None:
            scan.below_id = stopped_at + 1  # this page again, from that entry on
            return scan
        if len(recent) < len(page.deliveries) or page.next_cursor is None:
            scan.finished = True
            return scan
        cursor = scan.cursor = page.next_cursor
        scan.below_id = None
    return scan


def _redeliver(
    gw: GitHubGateway,
    scope: HookScope,
    hook: WebhookHook,
    entries: list[HookDeliveryInfo],
    now: datetime,
    result: RecoveryResult,
    seen: set[str],
) -> int | None:
    """Ask for the missed deliveries among ``entries`` (newest first). Returns the id
    of the entry the pass's cap or the budget stopped it at, None when all done."""
    guids = {e.guid for e in entries if e.guid}
    received = set(
        WebhookDelivery.objects.filter(delivery_id__in=guids).values_list(
            "delivery_id", flat=True
        )
    )
    asked = {r.guid: r for r in WebhookRedelivery.objects.filter(guid__in=guids)}
    for entry in entries:
        # The newest entry of an event decides: a later success settles it.
        if not entry.guid or entry.guid in seen:
            continue
        seen.add(entry.guid)
        if entry.succeeded or entry.guid in received:
            continue
        result.missed += 1
        previous = asked.get(entry.guid)
        if previous is not None and (
            previous.attempts >= settings.WEBHOOK_REDELIVERY_MAX_ATTEMPTS
            or previous.last_requested_at > now - REDELIVERY_BACKOFF
        ):
            continue
        if not _spend(gw, result):
            return entry.id
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
    return None
