"""A runner's deploy eligibility where it is used: per environment whose pool holds
it, under that environment's signal policy and the trust override.

The runner page's "Deploy eligibility" card and the runner API's ``eligible``,
``ineligibility_reasons`` and ``eligibility`` answer from here. A runner in no pool
takes no deploy anywhere; it is judged by the strict default policy, the
fleet-wide rule (``runners.eligibility.judge`` with its defaults).

The pools come from ``Runner.objects.with_pools()`` (environments loaded with
them), so judging a page of runners costs no query per runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runners.eligibility import Verdict, judge
from runners.models import Runner


@dataclass(frozen=True)
class PoolVerdict:
    """The runner judged for one environment whose pool holds it."""

    environment: str
    # 0: the primary; 1 and up: the secondaries, in order.
    position: int
    # The environment's signal policy in words.
    signal_policy: str
    verdict: Verdict

    @property
    def place(self) -> str:
        return "primary" if self.position == 0 else f"secondary {self.position}"


@dataclass(frozen=True)
class Eligibility:
    """Where deploys may go to a runner now, and why not elsewhere."""

    # One per environment whose pool holds the runner, by environment name.
    pools: list[PoolVerdict]
    # The fleet-wide verdict, for a runner in no pool (None when in pools).
    fleet: Verdict | None

    @property
    def eligible(self) -> bool:
        """Deploys may go to it in every environment whose pool holds it (or, in
        no pool, under the fleet-wide rule)."""
        return not self.reasons

    @property
    def reasons(self) -> list[str]:
        """Why not, in words; each prefixed with its environment for a pool runner."""
        if self.fleet is not None:
            return list(self.fleet.blocking)
        return [
            f"{pool.environment}: {why}"
            for pool in self.pools
            for why in pool.verdict.blocking
        ]

    @property
    def notes(self) -> list[str]:
        """What is wrong but keeps no deploy out (advisory signals, an override)."""
        if self.fleet is not None:
            return list(self.fleet.notes)
        return [
            f"{pool.environment}: {note}"
            for pool in self.pools
            for note in pool.verdict.notes
        ]

    @property
    def eligible_in(self) -> list[str]:
        return [pool.environment for pool in self.pools if pool.verdict.eligible]

    @property
    def style(self) -> str:
        """The card's class: eligible everywhere, nowhere, or in some pools only."""
        if self.eligible:
            return "eligible"
        return "partly-eligible" if self.eligible_in else "ineligible"


def eligibility(runner: Runner, now: datetime) -> Eligibility:
    """Judge ``runner`` at ``now`` for each environment whose pool holds it."""
    entries = list(runner.pool_entries.all())
    if not entries:
        return Eligibility([], judge(runner, now, scope="the fleet"))
    pools = [
        PoolVerdict(
            entry.environment.name,
            entry.position,
            entry.environment.signal_policy,
            entry.environment.judge(runner, now),
        )
        for entry in entries
    ]
    return Eligibility(sorted(pools, key=lambda p: p.environment), None)
