"""Inventory drift: the runner registry held against the inventory in force.

- **rogue**: registered in GitHub (seen by the sync, not removed), not in the
  inventory;
- **missing**: in the inventory, not registered in GitHub (never seen, or removed);
- **labels differ**: in both, and the inventory declares labels that the runner
  does not carry, or the runner carries labels the inventory does not declare.
  GitHub's default labels (``self-hosted``, the OS and the architecture) and the
  runner's own name label count only when the inventory lists them. Labels compare
  without case, as GitHub matches them.

Three queries whatever the fleet's size: the load in force, its runners, and the
registry's names, labels and registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from inventory.models import ExpectedRunner, InventoryLoad
from runners.models import Runner

KINDS = ("rogue", "missing", "labels_differ")
KIND_LABELS = {
    "rogue": "rogue (in GitHub, not in the inventory)",
    "missing": "missing (in the inventory, not in GitHub)",
    "labels_differ": "labels differ from the inventory's",
}
# The labels GitHub gives every self-hosted runner (lower case).
DEFAULT_LABELS = frozenset(
    {"self-hosted", "linux", "windows", "macos", "x64", "x86", "arm", "arm64"}
)


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
