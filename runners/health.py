"""Fleet health evaluation: one set-based sweep for every runner, and history retention.

The sweep turns each runner's signals into an observation, then applies hysteresis:
``HEALTH_FALL_AFTER`` consecutive observations worse than the runner's state move it
down, ``HEALTH_RISE_AFTER`` consecutive better ones move it up, anything else resets
the count, so a flapping signal never flaps the state. It costs the same handful of
statements at 100 runners and at 10,000 (plus one INSERT each for samples and events
when there are any); all the per-runner logic runs inside the database as CASE
expressions generated from ``runners.models.RULES``.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from operator import add
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.expressions import Combinable
from django.db.models.lookups import Exact, GreaterThan, LessThan
from django.utils import timezone

from runners.models import (
    RULES,
    STATE_RANK,
    Flag,
    HealthSample,
    Reason,
    Runner,
    RunnerEvent,
    State,
    evaluate_flags,
)

logger = logging.getLogger(__name__)

# Key of the PostgreSQL advisory lock that keeps two sweeps from counting the same
# observation twice (SQLite's IMMEDIATE transactions already serialise them).
_SWEEP_LOCK_KEY = 0x52554E4E  # "RUNN"


def assess_host(
    *,
    disk_free_bytes: int | None = None,
    disk_total_bytes: int | None = None,
    load1: float | None = None,
    cpus: int | None = None,
) -> Flag:
    """Apply the host thresholds to a host's numbers: ``Flag.DISK_LOW`` when less than
    ``DISK_FREE_MIN_PERCENT`` of the disk is free, ``Flag.LOAD_HIGH`` when the 1-minute
    load exceeds ``LOAD_PER_CPU_MAX`` per CPU. Missing numbers judge nothing.

    Used for heartbeat facts and by the exporter probe, so both apply one policy.
    """
    problems = Flag(0)
    if disk_free_bytes is not None and disk_total_bytes:
        if disk_free_bytes * 100 < disk_total_bytes * settings.DISK_FREE_MIN_PERCENT:
            problems |= Flag.DISK_LOW
    if load1 is not None and cpus:
        if load1 > cpus * settings.LOAD_PER_CPU_MAX:
            problems |= Flag.LOAD_HIGH
    return problems


# SQL building blocks ------------------------------------------------------------------


def _has(field: str, bits: int) -> Q:
    """``field & bits == bits`` as a filter."""
    return Q(Exact(F(field).bitand(bits), bits))


def _lacks(field: str, bits: int) -> Q:
    return Q(Exact(F(field).bitand(bits), 0))


def _bit(condition: Q, flag: Flag) -> Case:
    return Case(When(condition, then=Value(int(flag))), default=Value(0))


def observed_flags_expression(now: datetime) -> Combinable:
    """The SQL expression computing a runner's ``Flag`` bits from its signals at
    ``now``. Stale GitHub and exporter readings set no bit at all."""
    github_fresh = Q(
        github_seen_at__gt=now - timedelta(seconds=settings.GITHUB_STATUS_STALE_AFTER)
    )
    exporter_fresh = Q(
        exporter_checked_at__gt=now - timedelta(seconds=settings.EXPORTER_STALE_AFTER)
    )
    heartbeat_fresh = Q(heartbeat_deadline__gt=now)
    exporter_read = exporter_fresh & Q(exporter_ok=True)
    bits = [
        _bit(heartbeat_fresh, Flag.HEARTBEAT_FRESH),
        _bit(Q(heartbeat_deadline__lte=now), Flag.HEARTBEAT_STALE),
        _bit(github_fresh & Q(github_status="online"), Flag.GITHUB_ONLINE),
        _bit(github_fresh & Q(github_status="offline"), Flag.GITHUB_OFFLINE),
        _bit(exporter_read, Flag.EXPORTER_OK),
        _bit(exporter_fresh & Q(exporter_ok=False), Flag.EXPORTER_UNREACHABLE),
        _bit(
            (heartbeat_fresh & ~_lacks("facts_problems", Flag.DISK_LOW))
            | (exporter_read & ~_lacks("exporter_problems", Flag.DISK_LOW)),
            Flag.DISK_LOW,
        ),
        _bit(
            (heartbeat_fresh & ~_lacks("facts_problems", Flag.LOAD_HIGH))
            | (exporter_read & ~_lacks("exporter_problems", Flag.LOAD_HIGH)),
            Flag.LOAD_HIGH,
        ),
        _bit(Q(removed_at__isnull=False), Flag.REMOVED),
        _bit(
            Q(
                last_heartbeat_at__isnull=True,
                github_seen_at__isnull=True,
                exporter_checked_at__isnull=True,
            ),
            Flag.NEVER_SEEN,
        ),
    ]
    expression: Combinable = reduce(add, bits)
    return expression


def _from_rules(value: dict[str, Any] | None = None, *, attr: str) -> Case:
    """A CASE over the stored ``observed_flags`` giving each rule's ``attr`` (its
    state or reason), or ``value[attr]`` mapped when given (the state's rank)."""
    whens = []
    for rule in RULES[:-1]:
        condition = _has("observed_flags", rule.required)
        if rule.forbidden:
            condition &= _lacks("observed_flags", rule.forbidden)
        result = getattr(rule, attr)
        whens.append(When(condition, then=Value(value[result] if value else result)))
    last = getattr(RULES[-1], attr)
    return Case(*whens, default=Value(value[last] if value else last))


def _observed_state() -> Case:
    return _from_rules(attr="state")


def _observed_reason() -> Case:
    return _from_rules(attr="reason")


def _observed_rank() -> Case:
    return _from_rules(STATE_RANK, attr="state")


def _current_rank() -> Case:
    return Case(
        *(When(state=state, then=Value(rank)) for state, rank in STATE_RANK.items()),
        default=Value(STATE_RANK[State.UNKNOWN]),
    )


# The sweep --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: runners whose observation changed, and transitions made."""

    observed_changes: int
    transitions: int
    skipped: bool = False


def _claim_sweep() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_SWEEP_LOCK_KEY])
        row = cursor.fetchone()
    return bool(row and row[0])


def sweep(now: datetime | None = None) -> SweepResult:
    """Evaluate the health of every runner at ``now`` (default: the current time).

    1. Observe: store each runner's signal flags, writing only the rows whose flags
       changed, and a ``HealthSample`` for each heartbeat or GitHub signal that
       changed (the timeline of what each signal said).
    2. Count: bump ``bad_streak`` / ``good_streak`` of runners whose observation
       differs from their state, reset them where it agrees again.
    3. Transition the runners whose streak reached ``HEALTH_FALL_AFTER`` /
       ``HEALTH_RISE_AFTER``, with one ``RunnerEvent`` each (one bulk INSERT).

    Safe to run twice: a concurrent second sweep on PostgreSQL skips.
    """
    now = now or timezone.now()
    with transaction.atomic():
        if not _claim_sweep():
            return SweepResult(observed_changes=0, transitions=0, skipped=True)
        changes = _observe(now)
        _count_streaks()
        transitions = _transition(now)
    return SweepResult(observed_changes=changes, transitions=transitions)


# Which flags each sampled signal consists of.
_SAMPLED: tuple[tuple[HealthSample.Source, Flag, Flag], ...] = (
    (
        HealthSample.Source.HEARTBEAT,
        Flag.HEARTBEAT_FRESH | Flag.HEARTBEAT_STALE,
        Flag.HEARTBEAT_FRESH,
    ),
    (
        HealthSample.Source.GITHUB,
        Flag.GITHUB_ONLINE | Flag.GITHUB_OFFLINE,
        Flag.GITHUB_ONLINE,
    ),
)


def _signal_word(source: HealthSample.Source, flags: int) -> str:
    if source == HealthSample.Source.HEARTBEAT:
        if flags & Flag.HEARTBEAT_FRESH:
            return "fresh"
        return "stale" if flags & Flag.HEARTBEAT_STALE else "none"
    if flags & Flag.GITHUB_ONLINE:
        return "online"
    return "offline" if flags & Flag.GITHUB_OFFLINE else "stale"


def _observe(now: datetime) -> int:
    flags = observed_flags_expression(now)
    changed = list(
        Runner.objects.annotate(new_flags=flags)
        .exclude(observed_flags=F("new_flags"))
        .values_list("pk", "observed_flags", "new_flags")
    )
    if not changed:
        return 0
    Runner.objects.exclude(observed_flags=flags).update(observed_flags=flags)
    samples = []
    for pk, old, new in changed:
        for source, mask, good in _SAMPLED:
            if old & mask != new & mask and (new & mask or old & mask):
                samples.append(
                    HealthSample(
                        runner_id=pk,
                        source=source,
                        ok=bool(new & good),
                        observed_at=now,
                        detail={"signal": _signal_word(source, new)},
                    )
                )
    if samples:
        _insert(samples)
    return len(changed)


def _count_streaks() -> None:
    observed_rank = _observed_rank()
    current_rank = _current_rank()
    observed_reason = _observed_reason()
    worse = GreaterThan(observed_rank, current_rank)
    better = LessThan(observed_rank, current_rank)
    same = Exact(observed_rank, current_rank)
    Runner.objects.filter(
        Q(bad_streak__gt=0)
        | Q(good_streak__gt=0)
        | ~Q(same)
        | ~Q(reason=observed_reason)
    ).update(
        bad_streak=Case(When(worse, then=F("bad_streak") + 1), default=Value(0)),
        good_streak=Case(When(better, then=F("good_streak") + 1), default=Value(0)),
        # Same state, different reason (disk low → load high): follow it in place.
        reason=Case(When(same, then=observed_reason), default=F("reason")),
    )


def _transition(now: datetime) -> int:
    due = Runner.objects.filter(
        Q(bad_streak__gte=settings.HEALTH_FALL_AFTER)
        | Q(good_streak__gte=settings.HEALTH_RISE_AFTER)
    )
    rows = list(due.values_list("pk", "state", "observed_flags"))
    if not rows:
        return 0
    due.update(
        state=_observed_state(),
        reason=_observed_reason(),
        state_since=now,
        bad_streak=0,
        good_streak=0,
    )
    events = []
    for pk, old_state, flags in rows:
        new_state, reasons = evaluate_flags(flags)
        events.append(
            RunnerEvent(
                runner_id=pk,
                kind=RunnerEvent.Kind.STATE_CHANGE,
                from_state=old_state,
                to_state=new_state,
                reasons=[str(reason) for reason in reasons],
                message=_describe(old_state, new_state, reasons),
                actor="health-sweep",
                created_at=now,
            )
        )
    _insert(events)
    return len(events)


def _describe(old_state: str, new_state: str, reasons: list[Reason]) -> str:
    text = f"{old_state} → {new_state}"
    if reasons:
        text += ": " + ", ".join(Reason(reason).label for reason in reasons)
    return text


def _insert(objs: list[HealthSample] | list[RunnerEvent]) -> None:
    """Insert ``objs`` in as few multi-row INSERTs as the database allows: one on
    PostgreSQL; on SQLite, one per ``SQLITE_LIMIT_VARIABLE_NUMBER`` parameters.

    Django assumes SQLite's historic limit of 999 parameters (a statement per ~120
    rows); Python's SQLite reports the real limit (32,766 or more since 3.32), which
    Django 6 reads the same way."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        connection.features.max_query_params = max(999, limit)
    type(objs[0]).objects.bulk_create(objs)  # type: ignore[arg-type]


# Retention --------------------------------------------------------------------------------


def prune_history(
    now: datetime | None = None, *, batch: int = 5_000, max_batches: int = 100
) -> int:
    """Delete health samples and runner events older than ``HEALTH_RETENTION_DAYS``,
    ``batch`` rows per DELETE (by primary-key range, so no statement holds locks for
    long), at most ``max_batches`` per table per call. Returns the rows deleted; the
    next run carries on where a capped run stopped."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HEALTH_RETENTION_DAYS)
    deleted = 0
    for model, field in ((HealthSample, "observed_at"), (RunnerEvent, "created_at")):
        old = model.objects.filter(**{f"{field}__lt": cutoff})
        for _ in range(max_batches):
            pks = list(old.order_by("pk").values_list("pk", flat=True)[:batch])
            if not pks:
                break
            count, _ = old.filter(pk__gte=pks[0], pk__lte=pks[-1]).delete()
            deleted += count
            if len(pks) < batch:
                break
    return deleted
