"""Fleet health evaluation: one set-based sweep for every runner, and history retention.

The sweep turns each runner's signals into an observation, then applies hysteresis:
``HEALTH_FALL_AFTER`` consecutive observations worse than the runner's state move it
down, ``HEALTH_RISE_AFTER`` consecutive better ones move it up, anything else resets
the count, so a flapping signal never flaps the state. It costs the same five
statements at 100 runners and at 10,000 (two more when some runners transition):
every per-runner step runs inside the database, as CASE expressions generated from
``runners.states.RULES``, and samples and events are written by INSERT ... SELECT, so
no runner row ever travels to Python.

A runner's signals (heartbeat, GitHub status, exporter) become ``Flag`` bits in
``observed_flags``; the first matching rule of ``RULES`` gives the state and the
primary reason. Stale GitHub or exporter readings set no bit, so they can never make
a runner healthy; a runner with no fresh signal is ``unknown``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from operator import add
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    DateTimeField,
    F,
    Field,
    JSONField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Concat
from django.db.models.lookups import Exact, GreaterThan, LessThan
from django.utils import timezone

from runners import freshness
from runners.models import HealthSample, Runner, RunnerEvent
from runners.states import (
    RULES,
    STATE_RANK,
    Flag,
    Reason,
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


def _flag_conditions(now: datetime) -> list[tuple[Flag, Q]]:
    """Each ``Flag`` bit with the condition on a runner's signals that sets it at
    ``now``. Stale GitHub and exporter readings set no bit at all."""
    github_fresh = freshness.github_fresh(now)
    exporter_fresh = freshness.exporter_fresh(now)
    heartbeat_fresh = freshness.heartbeat_fresh(now)
    exporter_read = freshness.exporter_reporting(now)
    return [
        (Flag.HEARTBEAT_FRESH, heartbeat_fresh),
        (Flag.HEARTBEAT_STALE, freshness.heartbeat_stale(now)),
        (Flag.GITHUB_ONLINE, github_fresh & Q(github_status="online")),
        (Flag.GITHUB_OFFLINE, github_fresh & Q(github_status="offline")),
        (Flag.EXPORTER_OK, exporter_read),
        (Flag.EXPORTER_UNREACHABLE, exporter_fresh & Q(exporter_ok=False)),
        (
            Flag.DISK_LOW,
            (heartbeat_fresh & ~_lacks("facts_problems", Flag.DISK_LOW))
            | (exporter_read & ~_lacks("exporter_problems", Flag.DISK_LOW)),
        ),
        (
            Flag.LOAD_HIGH,
            (heartbeat_fresh & ~_lacks("facts_problems", Flag.LOAD_HIGH))
            | (exporter_read & ~_lacks("exporter_problems", Flag.LOAD_HIGH)),
        ),
        (Flag.REMOVED, Q(removed_at__isnull=False)),
        (
            Flag.NEVER_SEEN,
            Q(
                last_heartbeat_at__isnull=True,
                github_seen_at__isnull=True,
                exporter_checked_at__isnull=True,
            ),
        ),
        (Flag.CANARY_FAILED, Q(canary_failing=True)),
    ]


def observed_flags_expression(now: datetime, mask: int = ~0) -> Combinable:
    """The SQL expression computing a runner's ``Flag`` bits (those in ``mask``)
    from its signals at ``now``."""
    bits = [_bit(q, flag) for flag, q in _flag_conditions(now) if flag & mask]
    expression: Combinable = reduce(add, bits)
    return expression


def _from_rules(value: dict[str, Any] | None = None, *, attr: str) -> Case:
    """A CASE over the stored ``observed_flags`` giving the first matching rule's
    ``attr`` (its state or reason), mapped through ``value`` when given (the state's
    rank). Consecutive rules with the same result share one WHEN."""
    groups: list[tuple[Any, Q]] = []
    for rule in RULES[:-1]:
        condition = _has("observed_flags", rule.required)
        if rule.forbidden:
            condition &= _lacks("observed_flags", rule.forbidden)
        result = getattr(rule, attr)
        result = value[result] if value else result
        if groups and groups[-1][0] == result:
            groups[-1] = (result, groups[-1][1] | condition)
        else:
            groups.append((result, condition))
    last = getattr(RULES[-1], attr)
    return Case(
        *(When(condition, then=Value(result)) for result, condition in groups),
        default=Value(value[last] if value else last),
    )


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


# Called after a sweep that moved runners commits, with the sweep's ``now`` (the
# ``state_since`` of every runner it moved). Apps register from ``ready()``: the
# deploy engine wakes the deploys running on a runner that just fell, instead of
# finding out at its next poll.
_after_transitions: list[Callable[[datetime], object]] = []


def on_transitions(listener: Callable[[datetime], object]) -> None:
    """Call ``listener(now)`` after every sweep that changed some runner's state."""
    if listener not in _after_transitions:
        _after_transitions.append(listener)


def _notify_transitions(now: datetime) -> None:
    for listener in _after_transitions:
        try:
            listener(now)
        except Exception:
            # The sweep's work is committed; a listener's failure must not undo it
            # or stop the next listener (the deploys' own polls still come).
            logger.exception("health transition listener %r failed", listener)


def sweep(
    now: datetime | None = None, runners: QuerySet[Runner] | None = None
) -> SweepResult:
    """Evaluate the health of every runner (or of ``runners`` only: the deploying
    runners' check) at ``now`` (default: the current time).

    1. Observe: store each runner's signal flags, writing only the rows whose flags
       changed, and a ``HealthSample`` for each heartbeat or GitHub signal that
       changed (the timeline of what each signal said).
    2. Count: bump ``bad_streak`` / ``good_streak`` of runners whose observation
       differs from their state, reset them where it agrees again.
    3. Transition the runners whose streak reached ``HEALTH_FALL_AFTER`` /
       ``HEALTH_RISE_AFTER``, with a ``RunnerEvent`` each carrying the reason codes.

    All in one transaction. A second sweep started while one runs skips on
    PostgreSQL (advisory lock) and waits on SQLite (IMMEDIATE transactions).
    """
    now = now or timezone.now()
    with transaction.atomic():
        if not _claim_sweep():
            return SweepResult(observed_changes=0, transitions=0, skipped=True)
        fleet = Runner.objects.all() if runners is None else runners
        changes = _observe(now, fleet)
        _count_streaks(fleet)
        transitions = _transition(now, fleet)
        if transitions:
            moment = now
            transaction.on_commit(lambda: _notify_transitions(moment))
    return SweepResult(observed_changes=changes, transitions=transitions)


# The sampled signals: source, the flags that make up its reading, the good one, and
# what each reading is called on the timeline.
_SAMPLED: tuple[tuple[HealthSample.Source, Flag, Flag, dict[int, str]], ...] = (
    (
        HealthSample.Source.HEARTBEAT,
        Flag.HEARTBEAT_FRESH | Flag.HEARTBEAT_STALE,
        Flag.HEARTBEAT_FRESH,
        {Flag.HEARTBEAT_FRESH: "fresh", Flag.HEARTBEAT_STALE: "stale", 0: "none"},
    ),
    (
        HealthSample.Source.GITHUB,
        Flag.GITHUB_ONLINE | Flag.GITHUB_OFFLINE,
        Flag.GITHUB_ONLINE,
        {Flag.GITHUB_ONLINE: "online", Flag.GITHUB_OFFLINE: "offline", 0: "stale"},
    ),
)


def _insert_from_select(
    model: type[HealthSample] | type[RunnerEvent], rows: QuerySet[Runner, Any]
) -> int:
    """``INSERT INTO model (...) SELECT ...``: the rows are computed by the database
    from ``rows``, a ``values_list`` of annotations each named ``new_<field>`` after a
    field of ``model``, so 10,000 rows cost one statement and no Python objects."""
    names = list(rows.query.values_select) + list(rows.query.annotation_select)
    quote = connection.ops.quote_name
    fields = [
        cast("Field[Any, Any]", model._meta.get_field(name.removeprefix("new_")))
        for name in names
    ]
    columns = ", ".join(quote(str(field.column)) for field in fields)
    select, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} ({columns}) {select}", params
        )
        return int(cursor.rowcount)


def bulk_insert(objs: Sequence[HealthSample] | Sequence[RunnerEvent]) -> None:
    """Insert ``objs`` (samples or events) in as few multi-row INSERTs as the
    database allows: one on PostgreSQL; on SQLite one per
    ``SQLITE_LIMIT_VARIABLE_NUMBER`` parameters.

    Django assumes SQLite's historic limit of 999 parameters (a statement per ~120
    rows); Python's SQLite reports the real limit (32,766 or more since 3.32), which
    Django 6 reads the same way."""
    if not objs:
        return
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        connection.features.max_query_params = max(999, limit)
    type(objs[0]).objects.bulk_create(objs)  # type: ignore[arg-type]


# The name the registry sync imports.
_insert = bulk_insert


def _observe(now: datetime, fleet: QuerySet[Runner]) -> int:
    # 1. A sample for each runner whose heartbeat or GitHub reading changed, computed
    #    from the old and new flags before the new ones are stored.
    for source, mask, good, words in _SAMPLED:
        new = F("signal")
        rows = (
            fleet.alias(signal=observed_flags_expression(now, mask))
            .filter(~Q(Exact(F("observed_flags").bitand(int(mask)), new)))
            .order_by()
            .annotate(
                new_runner=F("pk"),
                new_source=Value(str(source)),
                new_ok=Case(
                    When(Exact(new, int(good)), then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                ),
                new_observed_at=Value(now, output_field=DateTimeField()),
                new_detail=Case(
                    *(
                        When(
                            Exact(new, int(bits)),
                            then=Value({"signal": word}, output_field=JSONField()),
                        )
                        for bits, word in words.items()
                    ),
                    output_field=JSONField(),
                ),
            )
            .values_list(
                "new_runner", "new_source", "new_ok", "new_observed_at", "new_detail"
            )
        )
        _insert_from_select(HealthSample, rows)
    # 2. Store the new flags where they changed.
    return (
        fleet.alias(flags=observed_flags_expression(now))
        .exclude(observed_flags=F("flags"))
        .update(observed_flags=F("flags"))
    )


def _count_streaks(fleet: QuerySet[Runner]) -> None:
    worse = GreaterThan(F("observed_rank"), F("current_rank"))
    better = LessThan(F("observed_rank"), F("current_rank"))
    same = Exact(F("observed_rank"), F("current_rank"))
    fleet.alias(
        observed_rank=_observed_rank(),
        current_rank=_current_rank(),
        observed_reason=_observed_reason(),
    ).filter(
        Q(bad_streak__gt=0)
        | Q(good_streak__gt=0)
        | ~Q(same)
        | ~Q(reason=F("observed_reason"))
    ).update(
        bad_streak=Case(When(worse, then=F("bad_streak") + 1), default=Value(0)),
        good_streak=Case(When(better, then=F("good_streak") + 1), default=Value(0)),
        # Same state, different reason (disk low → load high): follow it in place.
        reason=Case(When(same, then=F("observed_reason")), default=F("reason")),
    )


def _transition(now: datetime, fleet: QuerySet[Runner]) -> int:
    due = fleet.filter(
        Q(bad_streak__gte=settings.HEALTH_FALL_AFTER)
        | Q(good_streak__gte=settings.HEALTH_RISE_AFTER)
    ).order_by()
    # The few distinct observations among the runners due: each one's reason list and
    # message is worked out here from the rule table, then the events of all runners
    # are written by one INSERT ... SELECT before their state changes.
    distinct = sorted(set(due.values_list("observed_flags", flat=True).distinct()))
    if not distinct:
        return 0
    reasons: dict[int, list[str]] = {}
    for flags in distinct:
        reasons[flags] = [str(reason) for reason in evaluate_flags(flags)[1]]

    def by_flags(values: dict[int, Any], field: Field[Any, Any]) -> Case:
        return Case(
            *(
                When(observed_flags=flags, then=Value(value, output_field=field))
                for flags, value in values.items()
            ),
            output_field=field,
        )

    events = due.annotate(
        new_runner=F("pk"),
        new_kind=Value(str(RunnerEvent.Kind.STATE_CHANGE)),
        new_from_state=F("state"),
        new_to_state=_observed_state(),
        new_reasons=by_flags(reasons, JSONField()),
        new_message=Concat(
            F("state"),
            Value(" → "),
            _observed_state(),
            by_flags(
                {
                    flags: ": " + ", ".join(Reason(r).label for r in codes)
                    if codes
                    else ""
                    for flags, codes in reasons.items()
                },
                CharField(),
            ),
            output_field=CharField(),
        ),
        new_actor=Value("health-sweep"),
        new_created_at=Value(now, output_field=DateTimeField()),
    ).values_list(
        "new_runner",
        "new_kind",
        "new_from_state",
        "new_to_state",
        "new_reasons",
        "new_message",
        "new_actor",
        "new_created_at",
    )
    _insert_from_select(RunnerEvent, events)
    return due.update(
        state=_observed_state(),
        reason=_observed_reason(),
        state_since=now,
        bad_streak=0,
        good_streak=0,
    )


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
