"""Inventory drift: the runner registry held against the inventory in force.

- **rogue**: registered in GitHub (seen by the sync, not removed), not in the
  inventory;
- **missing**: in the inventory, not registered in GitHub (never seen, or removed);
- **labels differ**: in both, and the inventory declares labels that the runner
  does not carry, or the runner carries labels the inventory does not declare.
  GitHub's default labels (``self-hosted``, the OS and the architecture) and the
  runner's own name label count only when the inventory lists them. Labels compare
  without case, as GitHub matches them.

Two ways to the same numbers:

- :func:`compute` lists every drifting runner for the drift page and the API: three
  queries whatever the fleet's size, but it reads every runner and every expected
  runner into Python (half a second at 10,000 of each);
- :func:`summarize` only counts, in SQL, for what runs all the time: the home
  board's panel (every 5 s) and the ``/metrics`` collector (every scrape). Two
  queries (the load in force, then one statement) that read the tables as they
  are, so no cache or fingerprint can go stale: a sync, an admin's edit, a
  retention removal, a deleted runner or a new inventory shows in the very next
  count (job webhooks write only ``github_busy``, which drift does not read).

The statement joins the expected runners to the registered runners (GitHub lists
them, not removed) of the same name. Names are unique on both sides (a runner's,
and within a load), so each expected runner meets at most one registered runner
and each registered runner at most one expected: **missing** is the expected rows
that met none, and **rogue** is the registered runners less the pairs that met,
``registered - (expected - missing)``. **Labels differ** needs the labels compared
as sets, without case and with the implicit labels left out unless listed, which
SQL cannot do portably on JSON lists; each row stores its labels' *label set*
(``runners.label_sets``: ``key``, the labels that are not implicit, lower-cased and
sorted; ``defaults``, a bit per implicit label present), kept in step with the
row's own name and labels by every writer. With ``W`` the expected labels, ``H``
the runner's and ``I`` the implicit ones (GitHub's defaults and the runner's name),
all lower-cased, :func:`label_drift` finds no difference exactly when ``W ⊆ H``
and ``H - I ⊆ W``, which holds exactly when ``W - I = H - I`` (equal keys) and
``W ∩ I ⊆ H ∩ I`` (``runner.defaults & expected.defaults = expected.defaults``):
from left to right, ``H - I ⊆ W`` and ``H - I`` has nothing of ``I``, so ``H - I ⊆
W - I ⊆ H - I``; from right to left, ``W = (W - I) ∪ (W ∩ I) ⊆ H``. Both sides'
``I`` is the same because they are joined on the same name. Tests hold the counts
equal to :func:`compute`'s on every kind of drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from inventory.models import ExpectedRunner, InventoryLoad
from runners.label_sets import DEFAULT_LABELS
from runners.models import Runner

KINDS = ("rogue", "missing", "labels_differ")
KIND_LABELS = {
    "rogue": "rogue (in GitHub, not in the inventory)",
    "missing": "missing (in the inventory, not in GitHub)",
    "labels_differ": "labels differ from the inventory's",
}


@dataclass(frozen=True)
class Rogue:
    name: str
    labels: list[str]
    first_seen_at: datetime | None


@dataclass(frozen=True)
class Missing:
    name: str
    host: str
    groups: list[str]
    line: int | None
    # never_registered | removed | not_in_github (the control plane knows it, GitHub
    # has not listed it yet)
    status: str
    removed_at: datetime | None


@dataclass(frozen=True)
class LabelDrift:
    name: str
    host: str
    expected: list[str]
    actual: list[str]
    absent: list[str]  # expected, not carried
    unexpected: list[str]  # carried, not expected


@dataclass(frozen=True)
class Drift:
    load: InventoryLoad
    rogue: list[Rogue]
    missing: list[Missing]
    labels: list[LabelDrift]
    expected: int

    def counts(self) -> dict[str, int]:
        return {
            "rogue": len(self.rogue),
            "missing": len(self.missing),
            "labels_differ": len(self.labels),
        }


@dataclass(frozen=True)
class Summary:
    """The drift's counts by kind, without the runners."""

    load: InventoryLoad
    expected: int
    counts: dict[str, int]

    @property
    def matches(self) -> bool:
        return not any(self.counts.values())


def summarize() -> Summary | None:
    """The drift's counts in two queries, reading no runner into Python; None when
    no inventory was ever loaded."""
    load = InventoryLoad.objects.in_force()
    if load is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_SQL, [load.pk])
        expected, missing, differ, registered = cursor.fetchone()
    counts = {
        "rogue": registered - (expected - (missing or 0)),
        "missing": missing or 0,
        "labels_differ": differ or 0,
    }
    return Summary(load, expected, counts)


# Plain SQL that PostgreSQL and SQLite both speak (a join, CASE, and the bitwise
# AND of two small integers): no foreign key relates the two tables for the ORM to
# join, and a correlated subquery per expected runner costs twice the join. A
# registered runner's labels differ when its key does, or when the inventory lists
# an implicit label the runner lacks (a bit of e's not in r's).
_COUNTS_SQL = f"""
SELECT
    COUNT(*),
    SUM(CASE WHEN r.id IS NULL THEN 1 ELSE 0 END),
    SUM(CASE WHEN r.id IS NOT NULL AND e.labels IS NOT NULL AND (
        r.label_key <> e.label_key
        OR (r.label_defaults & e.label_defaults) <> e.label_defaults
    ) THEN 1 ELSE 0 END),
    (SELECT COUNT(*) FROM {Runner._meta.db_table}
        WHERE github_id IS NOT NULL AND removed_at IS NULL)
FROM {ExpectedRunner._meta.db_table} e
LEFT JOIN {Runner._meta.db_table} r
    ON r.name = e.name AND r.github_id IS NOT NULL AND r.removed_at IS NULL
WHERE e.load_id = %s
"""


def compute() -> Drift | None:
    """The drift against the inventory in force; None when none was ever loaded."""
    load = InventoryLoad.objects.in_force()
    if load is None:
        return None
    expected = list(
        ExpectedRunner.objects.filter(load=load)
        .order_by("name", "pk")
        .values_list("name", "host", "labels", "groups", "line")
    )
    runners = {
        name: (github_id, removed_at, labels, first_seen)
        for name, github_id, removed_at, labels, first_seen in Runner.objects.order_by(
            "name", "pk"
        ).values_list("name", "github_id", "removed_at", "labels", "first_seen_at")
    }
    wanted = {row[0] for row in expected}
    rogue = [
        Rogue(name, list(labels or []), first_seen)
        for name, (github_id, removed_at, labels, first_seen) in runners.items()
        if github_id is not None and removed_at is None and name not in wanted
    ]
    missing: list[Missing] = []
    drifted: list[LabelDrift] = []
    for name, host, labels, groups, line in expected:
        known = runners.get(name)
        if known is None or known[1] is not None or known[0] is None:
            missing.append(_missing(name, host, groups, line, known))
        elif labels is not None:
            differ = label_drift(name, host, labels, list(known[2] or []))
            if differ is not None:
                drifted.append(differ)
    return Drift(load, rogue, missing, drifted, len(expected))


def label_drift(
    name: str, host: str, expected: list[str], actual: list[str]
) -> LabelDrift | None:
    want = {label.lower() for label in expected}
    have = {label.lower() for label in actual}
    absent = [label for label in expected if label.lower() not in have]
    implicit = DEFAULT_LABELS | {name.lower()}
    unexpected = [
        label
        for label in actual
        if label.lower() not in want and label.lower() not in implicit
    ]
    if not absent and not unexpected:
        return None
    return LabelDrift(name, host, list(expected), list(actual), absent, unexpected)


def _missing(
    name: str,
    host: str,
    groups: list[str],
    line: int | None,
    known: tuple[int | None, datetime | None, list[str], datetime | None] | None,
) -> Missing:
    if known is None:
        return Missing(name, host, groups, line, "never_registered", None)
    if known[1] is not None:
        return Missing(name, host, groups, line, "removed", known[1])
    return Missing(name, host, groups, line, "not_in_github", None)
