"""The runner registry, kept in step with GitHub's list of self-hosted runners.

A sweep reads the runner list page by page (100 runners a page), each page
conditional on the ETag it had last time: a 304 costs no API budget and means the
page still lists exactly the runners it listed then. Pages that changed are upserted
in bulk, so a sweep costs a few statements per page and none per runner:

- a runner GitHub lists for the first time appears (``first_seen_at``, an
  ``appeared`` event);
- labels, OS, status and busy follow GitHub; ``github_seen_at`` says how fresh they
  are (the health sweep ignores a GitHub status older than
  ``GITHUB_STATUS_STALE_AFTER``);
- a runner missing from a complete, consistent sweep is marked removed (a
  ``removed`` event) and kept with its history; one that comes back is un-removed.

The sync task runs every few seconds, but a sweep happens only when
``RunnerSync.next_sync_at`` has passed: the interval grows with the number of pages
so steady-state use stays within ``GITHUB_BUDGET_SHARE`` of the token's hourly
limit (:func:`sync_budget`), and adapts without rewriting beat schedules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from controlplane.github import GitHubGateway, RunnerInfo, gateway
from controlplane.models import GitHubUsage
from runners import label_sets, name_labels, retention, versions
from runners.health import _insert
from runners.models import Runner, RunnerEvent, RunnerSync

logger = logging.getLogger(__name__)

# GitHub's default primary limit for a personal or OAuth token, used until a
# response has told us the real one.
DEFAULT_RATE_LIMIT = 5000
# A claimed sweep blocks others this long; a worker killed mid-sweep delays the
# next one by at most this much.
SWEEP_LEASE = timedelta(seconds=180)
# 100,000 runners; beyond that something is wrong with the pagination.
MAX_PAGES = 1000
_STATUSES = ("online", "offline")
# The columns of a synced runner that differ from row to row.
_ROW_FIELDS = frozenset(
    [
        "name",
        "github_id",
        "labels",
        "label_key",
        "label_defaults",
        "os",
        "github_status",
        "github_busy",
        "exporter_url",
    ]
)
SYNCED_FIELDS = [
    "github_id",
    "labels",
    "label_key",
    "label_defaults",
    "os",
    "github_status",
    "github_busy",
    "github_seen_at",
    "removed_at",
    "updated",
]


# Budget ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncBudget:
    """How much of the GitHub budget the runner sync may use, and what that means."""

    share: float
    rate_limit: int
    pages_per_sweep: int
    interval_seconds: float
    requests_per_hour: float

    @property
    def share_used(self) -> float:
        """Worst-case share of the hourly limit (every page changed every sweep)."""
        return self.requests_per_hour / self.rate_limit


def sync_budget(pages_per_sweep: int | None = None) -> SyncBudget:
    """The sync's budget for a fleet of ``pages_per_sweep`` pages (default: as many
    as the last sweep read).

    ``interval = pages / (share x limit / 3600)`` seconds, never below
    ``RUNNER_SYNC_MIN_INTERVAL``; the estimate counts every page as spending budget,
    though unchanged pages answer 304 for free.
    """
    if pages_per_sweep is None:
        state = RunnerSync.objects.filter(scope=_scope()).first()
        pages_per_sweep = len(state.pages) if state and state.pages else 1
    pages_per_sweep = max(1, pages_per_sweep)
    usage = GitHubUsage.objects.filter(pk=1).values_list("rate_limit_limit").first()
    limit = (usage[0] if usage else None) or DEFAULT_RATE_LIMIT
    share = settings.GITHUB_BUDGET_SHARE
    per_second = share * limit / 3600
    interval = max(
        float(settings.RUNNER_SYNC_MIN_INTERVAL), pages_per_sweep / per_second
    )
    return SyncBudget(
        share=share,
        rate_limit=limit,
        pages_per_sweep=pages_per_sweep,
        interval_seconds=interval,
        requests_per_hour=pages_per_sweep * 3600 / interval,
    )


# Sweeps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """What one sweep did."""

    skipped: bool = False
    pages: int = 0
    requests: int = 0
    not_modified: int = 0
    listed: int = 0
    appeared: int = 0
    removed: int = 0
    # False when the pages did not add up (the list changed while being read):
    # nothing was marked removed, and the next sweep reads every page afresh.
    consistent: bool = True
    interval_seconds: float = 0.0


@dataclass
class _Page:
    number: int
    etag: str | None
    ids: list[int]
    # None for a 304: the page lists the same runners as last time.
    runners: list[RunnerInfo] | None
    total_count: int | None = None


def _scope(gw: GitHubGateway | None = None) -> str:
    return (gw or gateway()).runners_url


def _state(gw: GitHubGateway, now: datetime) -> RunnerSync:
    # A scope never swept is due at once.
    state, _ = RunnerSync.objects.get_or_create(
        scope=_scope(gw), defaults={"next_sync_at": now}
    )
    return state


def is_due(now: datetime | None = None, *, gw: GitHubGateway | None = None) -> bool:
    """Whether a sweep is due (a cheap read; :func:`sync_if_due` claims it)."""
    now = now or timezone.now()
    return not RunnerSync.objects.filter(
        scope=_scope(gw), next_sync_at__gt=now
    ).exists()


def sync_if_due(
    now: datetime | None = None, *, gw: GitHubGateway | None = None
) -> SyncResult:
    """Sweep if ``next_sync_at`` has passed and no other worker is sweeping."""
    now = now or timezone.now()
    gw = gw or gateway()
    state = _state(gw, now)
    # The claim: a conditional UPDATE only one worker can win.
    claimed = RunnerSync.objects.filter(pk=state.pk, next_sync_at__lte=now).update(
        next_sync_at=now + SWEEP_LEASE
    )
    if not claimed:
        return SyncResult(skipped=True)
    return _sweep(gw, state, now)


def sync_fleet(
    now: datetime | None = None, *, gw: GitHubGateway | None = None
) -> SyncResult:
    """Sweep now, due or not (the demo command, benchmarks, an admin's request)."""
    now = now or timezone.now()
    gw = gw or gateway()
    state = _state(gw, now)
    RunnerSync.objects.filter(pk=state.pk).update(next_sync_at=now + SWEEP_LEASE)
    return _sweep(gw, state, now)


def _sweep(gw: GitHubGateway, state: RunnerSync, now: datetime) -> SyncResult:
    """1. Read every page from GitHub (no transaction open: slow I/O holds no locks).
    2. In one transaction: upsert the changed pages, mark runners missing from a
       consistent sweep removed, refresh ``github_seen_at`` of the unchanged ones.
    3. Remember the pages' ETags and schedule the next sweep by the budget.
    """
    try:
        pages = _fetch(gw, state)
    except Exception:
        # Try again after the shortest interval rather than the lease.
        retry_at = now + timedelta(seconds=settings.RUNNER_SYNC_MIN_INTERVAL)
        RunnerSync.objects.filter(pk=state.pk).update(next_sync_at=retry_at)
        raise
    total = _total(pages, state)
    listed = [github_id for page in pages for github_id in page.ids]
    consistent = total is not None and len(set(listed)) == len(listed) == total
    if not consistent:
        logger.warning(
            "GitHub's runner list changed while it was read (%d runners on %d pages, "
            "total %s); removals wait for the next sweep",
            len(set(listed)),
            len(pages),
            total,
        )
    budget = sync_budget(len(pages))
    appeared = removed = 0
    with transaction.atomic():
        for page in pages:
            if page.runners is not None:
                appeared += _upsert(page.runners, now)
        if consistent:
            removed = _mark_removed(set(listed), now)
            # Everything still active was listed just now, on a 200 or a 304 page.
            Runner.objects.active().filter(github_id__isnull=False).exclude(
                github_seen_at=now
            ).update(github_seen_at=now)
        _apply_exporter_template()
        # The registry's hygiene: versions GitHub listed, pool runners' name labels.
        versions.record_from_github(i for p in pages for i in p.runners or ())
        name_labels.flag()
        retention.track_offline(now)
        RunnerSync.objects.filter(pk=state.pk).update(
            # After an inconsistent read no ETag can be trusted to describe a
            # consistent list: read every page again next time.
            pages=[
                {"etag": page.etag if consistent else None, "ids": page.ids}
                for page in pages
            ],
            total_count=total,
            interval_seconds=budget.interval_seconds,
            next_sync_at=now + timedelta(seconds=budget.interval_seconds),
            last_sync_at=now,
            last_requests=len(pages),
            last_not_modified=sum(page.runners is None for page in pages),
        )
    return SyncResult(
        pages=len(pages),
        requests=len(pages),
        not_modified=sum(page.runners is None for page in pages),
        listed=len(set(listed)),
        appeared=appeared,
        removed=removed,
        consistent=consistent,
        interval_seconds=budget.interval_seconds,
    )


def _fetch(gw: GitHubGateway, state: RunnerSync) -> list[_Page]:
    stored: list[dict[str, Any]] = list(state.pages or [])
    pages: list[_Page] = []
    use_etags = True
    last = 1
    number = 1
    while number <= min(last, MAX_PAGES):
        known = stored[number - 1] if number <= len(stored) else None
        etag = known["etag"] if known and use_etags else None
        result = gw.list_runners_page(number, etag=etag)
        if result.not_modified and known is not None:
            pages.append(_Page(number, etag, list(known["ids"]), None))
            if number == 1:
                # Page 1 unchanged means the total (in its body) is unchanged too.
                last = len(stored)
        else:
            runners = result.runners
            pages.append(
                _Page(
                    number,
                    result.etag,
                    [runner.id for runner in runners],
                    runners,
                    result.total_count,
                )
            )
            last = result.last_page or number
            if number == 1 and last != len(stored):
                # Runners moved between pages: an old page's ETag may describe a
                # list that no longer exists.
                use_etags = False
        number += 1
    return pages


def _total(pages: list[_Page], state: RunnerSync) -> int | None:
    """The list's total as every changed page reported it (None if they differ)."""
    totals = {page.total_count for page in pages if page.runners is not None}
    if not totals:
        return state.total_count
    if len(totals) > 1:
        return None
    return totals.pop()


def _upsert(infos: list[RunnerInfo], now: datetime) -> int:
    """Insert or update one page of runners by name; returns how many appeared."""
    if not infos:
        return 0
    names = [info.name for info in infos]
    ids = [info.id for info in infos]
    existing = {
        row[0]: row
        for row in Runner.objects.filter(Q(name__in=names) | Q(github_id__in=ids))
        .order_by()
        .values_list("name", "pk", "github_id", "removed_at", "first_seen_at")
    }
    by_name = {info.name: info for info in infos}
    # The name is the runner's identity (deploys target it); a runner registered
    # again gets a new GitHub id under the same name. A row holding one of these
    # ids under another name is stale: free the id so the upsert cannot collide.
    stale = [
        pk
        for name, pk, github_id, _, _ in existing.values()
        if name not in by_name and github_id in ids
    ]
    if stale:
        Runner.objects.filter(pk__in=stale).update(github_id=None)
    _upsert_rows(infos, now)
    # New rows, rows that were removed, and rows an admin registered before GitHub
    # listed them: each gets an "appeared" event (and a first_seen_at if missing).
    appearing: dict[str, str] = {}
    never_seen: list[int] = []
    for name in names:
        row = existing.get(name)
        if row is None:
            appearing[name] = "listed by GitHub for the first time"
        elif row[3] is not None:
            appearing[name] = "listed by GitHub again"
        elif row[2] is None:
            appearing[name] = "linked to its GitHub registration"
        if row is not None and row[4] is None:
            never_seen.append(row[1])
    if never_seen:
        Runner.objects.filter(pk__in=never_seen).update(first_seen_at=now)
    if appearing:
        rows = Runner.objects.filter(name__in=list(appearing)).values_list(
            "name", "pk", "state"
        )
        _insert(
            [
                RunnerEvent(
                    runner_id=pk,
                    kind=RunnerEvent.Kind.APPEARED,
                    from_state=state,
                    to_state=state,
                    message=appearing[name],
                    actor="github-sync",
                    created_at=now,
                )
                for name, pk, state in rows
            ]
        )
    return len(appearing)


def _upsert_rows(infos: list[RunnerInfo], now: datetime) -> None:
    """``INSERT ... ON CONFLICT (name) DO UPDATE`` one page of runners, as one
    ``executemany`` of a one-row statement (PostgreSQL and SQLite spell it the same).

    What ``bulk_create(update_conflicts=True)`` would send, built by hand: Django
    prepares every column of every row one by one (40 columns x 10,000 runners took
    5 of the first sweep's seconds), while here the columns a sync does not set are
    prepared once per page. One short statement repeated, rather than one with 4,000
    placeholders, because psycopg parses a statement's placeholders in Python (and
    caches only short statements) and pipelines ``executemany`` into one round trip.
    """
    template = settings.RUNNER_EXPORTER_URL_TEMPLATE
    fields = [field for field in Runner._meta.concrete_fields if not field.primary_key]
    fixed: dict[str, Any] = {
        "github_seen_at": now,
        "first_seen_at": now,
        "removed_at": None,
        "updated": now,
        "created": now,
        "state_since": now,
    }
    constants = {
        field.name: field.get_db_prep_save(
            fixed[field.name] if field.name in fixed else field.get_default(),
            connection,
        )
        for field in fields
        if field.name not in _ROW_FIELDS
    }
    labels = Runner._meta.get_field("labels")
    rows: list[list[Any]] = []
    for info in infos:
        label_key, label_defaults = label_sets.key_of(info.name, info.labels)
        row = {
            "name": info.name,
            "github_id": info.id,
            "labels": labels.get_db_prep_save(list(info.labels), connection),
            "label_key": label_key,
            "label_defaults": label_defaults,
            "os": info.os,
            "github_status": info.status if info.status in _STATUSES else "",
            "github_busy": info.busy,
            "exporter_url": template.replace("{name}", info.name) if template else "",
        }
        rows.append(
            [
                row[field.name] if field.name in row else constants[field.name]
                for field in fields
            ]
        )
    quote = connection.ops.quote_name
    column = {field.name: quote(str(field.column)) for field in fields}
    values = "(" + ", ".join(["%s"] * len(fields)) + ")"
    updates = ", ".join(f"{column[n]} = excluded.{column[n]}" for n in SYNCED_FIELDS)
    sql = (
        f"INSERT INTO {quote(Runner._meta.db_table)} "
        f"({', '.join(column[field.name] for field in fields)}) "
        f"VALUES {values} "
        f"ON CONFLICT ({column['name']}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _mark_removed(listed: set[int], now: datetime) -> int:
    """Mark active runners GitHub no longer lists as removed, with an event each."""
    gone = [
        (pk, state)
        for pk, github_id, state in Runner.objects.active()
        .filter(github_id__isnull=False)
        .order_by()
        .values_list("pk", "github_id", "state")
        if github_id not in listed
    ]
    if not gone:
        return 0
    Runner.objects.filter(pk__in=[pk for pk, _ in gone]).update(removed_at=now)
    _insert(
        [
            RunnerEvent(
                runner_id=pk,
                kind=RunnerEvent.Kind.REMOVED,
                from_state=state,
                to_state=state,
                reasons=["removed_from_github"],
                message="no longer listed by GitHub",
                actor="github-sync",
                created_at=now,
            )
            for pk, state in gone
        ]
    )
    return len(gone)


def _apply_exporter_template() -> None:
    """Give active runners without an exporter URL the templated one (one UPDATE)."""
    template = settings.RUNNER_EXPORTER_URL_TEMPLATE
    if not template:
        return
    prefix, _, suffix = template.partition("{name}")
    if "{name}" in suffix:
        # Rare templates naming the runner twice: fill them row by row in Python.
        for runner in Runner.objects.active().filter(exporter_url=""):
            runner.exporter_url = template.replace("{name}", runner.name)
            runner.save(update_fields=["exporter_url"])
        return
    Runner.objects.active().filter(exporter_url="").update(
        exporter_url=Concat(Value(prefix), F("name"), Value(suffix))
    )
