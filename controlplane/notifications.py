"""Notifications to SREs: an outbox of messages for webhook targets, with retries.

How a notification comes to be and leaves:

1. **Producers.** ``notify(kind, subject, body, link, dedupe_key=..., **fields)``
   inserts one ``Notification`` row per configured target. Call it inside the
   transaction that writes the state change, so the message exists exactly when
   the change committed. The secrets code calls it when a schedule turns overdue
   or a required secret goes missing::

       with transaction.atomic():
           schedule.save(...)
           notify(
               Kind.SECRET_OVERDUE,
               f"Secret {schedule.name} is overdue for rotation",
               f"Due {schedule.next_due:%Y-%m-%d}; owner {schedule.owner}.",
               f"/secrets/{schedule.pk}/",
               dedupe_key=f"secret-overdue:{schedule.pk}:{schedule.next_due:%Y%m%d}",
               runbook="secret-overdue",
               secret=schedule.name,
           )

   The same ``dedupe_key`` twice creates nothing new (a unique constraint with the
   target), so retried code never sends a message twice. Fields are names, states
   and reasons: never a secret value.

2. **Event scanners.** Deploy and runner state changes already write event rows
   in the transaction that makes them (``DeployEvent`` from the deploy engine,
   ``RunnerEvent`` from the set-based health sweep, which writes them with
   ``INSERT ... SELECT`` and so cannot call Python per row). Each app registers a
   ``Scanner`` for its table from its ``ready()`` (``deploys.notify``,
   ``runners.notify``), so this module imports no app. ``scan_events()`` reads
   each table past a high-water mark (``NotificationCursor``) and turns the
   events SREs act on into notifications: deploy failed, failover happened, no
   healthy runner, runner unhealthy, runner recovered. Events younger than
   ``NOTIFY_SCAN_GRACE`` wait for the next scan: ids are handed out before commit,
   so a slow transaction can commit an id below the mark; the grace keeps the mark
   behind it. Rows come with dedupe keys, so two scanners racing create each
   notification once.

3. **Delivery.** ``deliver_due()`` claims due rows one by one with a conditional
   UPDATE that moves ``next_attempt_at`` a lease ahead and counts the attempt (0
   rows changed: another deliverer has it), POSTs with a short timeout, then marks
   the row sent, or schedules a retry with exponential backoff, or marks it failed
   after ``NOTIFY_MAX_ATTEMPTS``. A deliverer killed mid-send leaves the row due
   again when its lease ends. Targets: ``NOTIFY_WEBHOOK_URLS`` get a generic JSON
   body, ``NOTIFY_SLACK_WEBHOOK_URLS`` a Slack-compatible ``{"text", "blocks"}``.

``controlplane.tasks.deliver_notifications`` (beat, every 5 s) runs both steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from controlplane.models import Notification, NotificationCursor
from controlplane.runbooks import runbook_url

logger = logging.getLogger(__name__)

Severity = Notification.Severity


class Kind(models.TextChoices):
    DEPLOY_FAILED = "deploy_failed", "deploy failed"
    DEPLOY_FAILOVER = "deploy_failover", "deploy failed over"
    NO_HEALTHY_RUNNER = "no_healthy_runner", "no healthy runner"
    RUNNER_UNHEALTHY = "runner_unhealthy", "runner unhealthy"
    RUNNER_RECOVERED = "runner_recovered", "runner recovered"
    SECRET_OVERDUE = "secret_overdue", "secret overdue"
    SECRET_MISSING = "secret_missing", "secret missing"
    DEPLOY_SIGNOFF_AWAITED = "deploy_signoff_awaited", "approvals awaited"
    DEPLOY_BREAK_GLASS = "deploy_break_glass", "deploy broke glass"


SEVERITIES: dict[str, str] = {
    Kind.DEPLOY_FAILED: Severity.CRITICAL,
    Kind.DEPLOY_FAILOVER: Severity.WARNING,
    Kind.NO_HEALTHY_RUNNER: Severity.CRITICAL,
    Kind.RUNNER_UNHEALTHY: Severity.WARNING,
    Kind.RUNNER_RECOVERED: Severity.INFO,
    Kind.SECRET_OVERDUE: Severity.WARNING,
    Kind.SECRET_MISSING: Severity.CRITICAL,
    Kind.DEPLOY_SIGNOFF_AWAITED: Severity.INFO,
    Kind.DEPLOY_BREAK_GLASS: Severity.WARNING,
}

JSON_STYLE = "json"
SLACK_STYLE = "slack"
SCAN_BATCH = 1000
DELIVER_BATCH = 100
PRUNE_SOURCE = "prune"
PRUNE_EVERY = timedelta(hours=1)


# Targets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A webhook to POST to; ``key`` names it in the database without its URL."""

    style: str
    url: str

    @property
    def key(self) -> str:
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return f"{self.style}:{digest}"


def targets() -> dict[str, Target]:
    """Every configured target by key, from the NOTIFY_* settings."""
    found = [Target(JSON_STYLE, url) for url in settings.NOTIFY_WEBHOOK_URLS]
    found += [Target(SLACK_STYLE, url) for url in settings.NOTIFY_SLACK_WEBHOOK_URLS]
    return {target.key: target for target in found}


def absolute(link: str) -> str:
    """``link`` made absolute with SITE_URL (absolute links are kept)."""
    if not link or "://" in link:
        return link
    return settings.SITE_URL + "/" + link.lstrip("/")


# Producers ----------------------------------------------------------------------------


def notify(
    kind: str,
    subject: str,
    body: str = "",
    link: str = "",
    *,
    dedupe_key: str = "",
    runbook: str = "",
    severity: str | None = None,
    now: datetime | None = None,
    **fields: Any,
) -> int:
    """Queue a notification for every configured target; returns the rows offered
    (one per target; a duplicate ``dedupe_key`` is skipped by the database).

    ``link`` and ``runbook`` may be site paths ("/fleet/r1/") or runbook slugs
    (``runbook="deploy-failed"``). An empty ``dedupe_key`` makes every call new.
    """
    return _insert(
        [draft(kind, subject, body, link, dedupe_key, runbook, severity, now, fields)]
    )


@dataclass
class Draft:
    """A notification before it is offered to each target; made by ``draft()``."""

    kind: str
    severity: str
    subject: str
    message: str
    link: str
    runbook: str
    dedupe_key: str
    fields: dict[str, Any]
    created_at: datetime


def draft(
    kind: str,
    subject: str,
    body: str,
    link: str,
    dedupe_key: str,
    runbook: str,
    severity: str | None,
    now: datetime | None,
    fields: dict[str, Any],
) -> Draft:
    return Draft(
        kind=str(kind),
        severity=str(severity or SEVERITIES.get(kind, Severity.WARNING)),
        subject=subject[:200],
        message=body[:2000],
        link=absolute(link)[:500],
        runbook=absolute(runbook if "://" in runbook else runbook_url(runbook))[:500],
        dedupe_key=(dedupe_key or f"{kind}:{uuid.uuid4().hex}")[:200],
        fields=fields,
        created_at=now or timezone.now(),
    )


def _insert(drafts: Iterable[Draft]) -> int:
    configured = list(targets())
    rows = [
        Notification(
            kind=d.kind,
            severity=d.severity,
            subject=d.subject,
            message=d.message,
            link=d.link,
            runbook=d.runbook,
            fields=d.fields,
            dedupe_key=d.dedupe_key,
            target=key,
            created_at=d.created_at,
        )
        for d in drafts
        for key in configured
    ]
    if not rows:
        return 0
    # A row already there (same event, same target) is skipped, not an error.
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


# Event scanners -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scanner:
    """An app's event table and how its events become notifications.

    ``events`` returns the table's queryset (related rows selected); ``convert``
    turns one event into a draft, or None for events nobody needs to hear about.
    ``collapse`` may merge one batch's drafts (a storm of alike events into one
    summary). ``source`` names the high-water mark in ``NotificationCursor``.
    """

    source: str
    events: Callable[[], models.QuerySet[Any]]
    convert: Callable[[Any], Draft | None]
    collapse: Callable[[list[Draft]], list[Draft]] = list


_scanners: dict[str, Scanner] = {}


def register_scanner(scanner: Scanner) -> None:
    """Scan ``scanner``'s table on every tick; apps call this from ``ready()``."""
    _scanners[scanner.source] = scanner


def scan_events(now: datetime | None = None) -> int:
    """Turn events past each registered table's high-water mark into notifications;
    returns how many rows were offered to the outbox."""
    now = now or timezone.now()
    # In source order, whatever the order the apps registered in.
    return sum(_scan(scanner, now) for _, scanner in sorted(_scanners.items()))


def _scan(scanner: Scanner, now: datetime) -> int:
    source = scanner.source
    cursor, _ = NotificationCursor.objects.get_or_create(source=source)
    cutoff = now - timedelta(seconds=settings.NOTIFY_SCAN_GRACE)
    batch = list(
        scanner.events().filter(pk__gt=cursor.last_id).order_by("pk")[:SCAN_BATCH]
    )
    # Stop at the first event still inside the grace period: everything after it
    # waits, so the mark never passes a row that may not be visible yet.
    ready = []
    for event in batch:
        if event.created_at > cutoff:
            break
        ready.append(event)
    if not ready:
        return 0
    with transaction.atomic():
        created = 0
        if targets():
            drafts = [d for d in map(scanner.convert, ready) if d is not None]
            created = _insert(scanner.collapse(drafts))
        # Monotonic: a slower scanner that read fewer rows never moves it back.
        NotificationCursor.objects.filter(
            source=source, last_id__lt=ready[-1].pk
        ).update(last_id=ready[-1].pk, updated_at=now)
    return created


# Delivery -------------------------------------------------------------------------------


def json_body(n: Notification) -> dict[str, Any]:
    """The generic JSON body."""
    return {
        "kind": n.kind,
        "severity": n.severity,
        "subject": n.subject,
        "message": n.message,
        "link": n.link,
        "runbook_url": n.runbook,
        "fields": n.fields,
        "created_at": n.created_at.isoformat(),
    }


def slack_body(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` for previews, ``blocks`` to read."""
    links = [f"<{n.link}|Open>"] if n.link else []
    if n.runbook:
        links.append(f"<{n.runbook}|Runbook>")
    icon = {"critical": ":red_circle:", "warning": ":warning:"}.get(
        n.severity, ":white_check_mark:"
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{icon} *{n.subject}*"},
        }
    ]
    if n.message:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": n.message[:2900]}}
        )
    facts = [
        {"type": "mrkdwn", "text": f"*{name}*: {value}"}
        for name, value in n.fields.items()
        if isinstance(value, str | int | float) and value != ""
    ][:10]
    if facts:
        blocks.append({"type": "section", "fields": facts})
    if links:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": " · ".join(links)}],
            }
        )
    return {"text": f"[{n.severity}] {n.subject}", "blocks": blocks}


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return float(
        min(settings.NOTIFY_RETRY_MAX, settings.NOTIFY_RETRY_BASE * 2 ** (attempts - 1))
    )


def deliver_due(now: datetime | None = None, *, limit: int = DELIVER_BATCH) -> int:
    """Send due notifications; returns how many this call claimed.

    The task shares the health queue, so one tick is kept short: after a target
    fails, its other rows wait for the next tick (a dead receiver costs one
    timeout per tick, not one per row), and no new claim starts once the tick
    has used its time budget.
    """
    now = now or timezone.now()
    started = time.monotonic()
    budget = settings.NOTIFY_TIMEOUT * 2
    due = Notification.objects.due(now).order_by("next_attempt_at", "pk")
    failing: set[str] = set()
    claimed = 0
    for pk, target in due.values_list("pk", "target")[:limit]:
        if target in failing:
            continue
        if time.monotonic() - started > budget:
            break
        outcome = deliver(pk, now=now)
        if outcome is None:
            continue
        claimed += 1
        if not outcome:
            failing.add(target)
    return claimed


def deliver(pk: int, *, now: datetime | None = None) -> bool | None:
    """Claim and send one notification: True when sent, False when it failed,
    None when it was not due or another deliverer has it.

    1. Claim: a conditional UPDATE pushes ``next_attempt_at`` a lease ahead and
       counts the attempt; 0 rows means another deliverer has it.
    2. POST outside any transaction (no locks held while waiting on a receiver).
    3. Record the outcome: sent, a retry after backoff, or failed for good.
    """
    now = now or timezone.now()
    lease = now + timedelta(seconds=settings.NOTIFY_TIMEOUT * 3 + 30)
    claimed = Notification.objects.filter(
        pk=pk, state=Notification.State.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease, attempts=F("attempts") + 1)
    if not claimed:
        return None
    notification = Notification.objects.get(pk=pk)
    target = targets().get(notification.target)
    error = (
        "target no longer configured" if target is None else _post(target, notification)
    )
    if not error:
        Notification.objects.filter(pk=pk).update(
            state=Notification.State.SENT, sent_at=timezone.now(), last_error=""
        )
        return True
    logger.warning(
        "notification %s to %s failed (attempt %s): %s",
        pk,
        notification.target,
        notification.attempts,
        error,
    )
    if target is None or notification.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        Notification.objects.filter(pk=pk).update(
            state=Notification.State.FAILED, last_error=error[:300]
        )
    else:
        Notification.objects.filter(pk=pk).update(
            next_attempt_at=now + timedelta(seconds=backoff(notification.attempts)),
            last_error=error[:300],
        )
    return False


def _post(target: Target, notification: Notification) -> str:
    """POST the notification; the error in words ("" on success).

    Errors name the status or the exception type only: the URL (and so any token
    in it) never reaches a log line or the database.
    """
    body = (
        slack_body(notification)
        if target.style == SLACK_STYLE
        else json_body(notification)
    )
    request = urllib.request.Request(
        target.url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "controlplane"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(
            request, timeout=settings.NOTIFY_TIMEOUT
        ) as response:  # noqa: S310 - http(s) only, checked in settings
            response.read(1024)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: cannot reach the target"
    return ""


def prune(now: datetime | None = None) -> int:
    """Delete sent and failed notifications older than NOTIFY_RETENTION_DAYS, at
    most once an hour whatever the number of deliverers; returns rows deleted."""
    now = now or timezone.now()
    NotificationCursor.objects.get_or_create(
        source=PRUNE_SOURCE, defaults={"updated_at": now - PRUNE_EVERY}
    )
    # The cursor row's timestamp is the last prune: claiming it is the lease.
    claimed = NotificationCursor.objects.filter(
        source=PRUNE_SOURCE, updated_at__lte=now - PRUNE_EVERY
    ).update(updated_at=now)
    if not claimed:
        return 0
    cutoff = now - timedelta(days=settings.NOTIFY_RETENTION_DAYS)
    deleted, _ = Notification.objects.filter(
        state__in=Notification.FINAL_STATES, created_at__lt=cutoff
    ).delete()
    return deleted


def process(now: datetime | None = None) -> tuple[int, int]:
    """One beat tick: scan new events, then deliver; (created, claimed)."""
    prune(now)
    created = scan_events(now)
    # A fresh "now" by default: the rows just created are due from their insert.
    return created, deliver_due(now)
