"""Stale runners: runners GitHub has reported offline for long, proposed for removal.

GitHub removes a self-hosted runner that has been offline for 14 days
(``retention_conf.GITHUB_OFFLINE_REMOVAL``). Before it does, the control plane
proposes the removal to SREs (the ``/retention/`` page and
``/api/v1/stale-runners/``): a runner offline for ``RUNNER_STALE_AFTER_DAYS`` is
listed with the reason and the date GitHub will remove it by. Nothing is removed
automatically.

- :func:`track_offline`: the GitHub sync records when it first saw each runner
  offline (``Runner.offline_since``) and clears it when the runner is back online.
  It is when *the sync* saw it, so GitHub's clock (from the runner's last
  connection) may be ahead of it by the sync's interval: the page says "by".
- :func:`remove`: an SRE removes one stale runner from GitHub
  (``DELETE .../actions/runners/{id}``) and marks it removed in the registry (kept
  with its history, like a runner the sync finds gone), audited as
  ``runner.remove``. Refused for a runner in an environment's pool: take it out of
  the pool first, deliberately (deploys target pool runners by name, and a pool
  that silently loses a runner loses its failover). Refused as well for a runner
  GitHub does not report offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Prefetch, QuerySet

from controlplane import audit
from controlplane.github import GitHubError, GitHubNotFound, gateway
from controlplane.models import AuditEvent
from runners.models import Runner, RunnerEvent
from runners.retention_conf import GITHUB_OFFLINE_REMOVAL, stale_after

DENIED = AuditEvent.Outcome.DENIED
FAILURE = AuditEvent.Outcome.FAILURE


class RemovalRefused(ValueError):
    """The runner may not be removed; the message says why and what to do."""


class RemovalFailed(RuntimeError):
    """GitHub did not remove the runner; the message says what it answered."""


def track_offline(now: datetime) -> None:
    """Set ``offline_since`` on active runners GitHub newly reports offline, clear
    it on those it reports online again (two UPDATEs that touch only the runners
    whose status changed; the sync calls it after writing the statuses)."""
    active = Runner.objects.active()
    active.filter(github_status="offline", offline_since__isnull=True).update(
        offline_since=now
    )
    active.exclude(github_status="offline").filter(offline_since__isnull=False).update(
        offline_since=None
    )


@dataclass(frozen=True)
class StaleRunner:
    """A runner proposed for removal, and why."""

    runner: Runner
    offline_for: timedelta
    # GitHub removes it by then (its clock started at or before offline_since).
    github_removes_by: datetime
    # (environment name, position) of each pool it is in: removal waits for these.
    pools: tuple[tuple[str, int], ...]

    @property
    def removable(self) -> bool:
        return not self.pools

    @property
    def reason(self) -> str:
        days = self.offline_for.days
        return (
            f"GitHub has reported it offline for {days} day{'s' if days != 1 else ''}"
            f" (since {self.runner.offline_since:%Y-%m-%d %H:%M} UTC)"
        )


def stale_queryset(now: datetime) -> QuerySet[Runner]:
    """Active runners GitHub has reported offline for ``stale_after()`` or longer,
    longest offline first, with their pool entries (one more query)."""
    pool_entries = Runner._meta.get_field("pool_entries").related_model
    entries = pool_entries._default_manager.select_related("environment").order_by(
        "environment__name", "pk"
    )
    return (
        Runner.objects.active()
        .filter(github_status="offline", offline_since__lte=now - stale_after())
        .order_by("offline_since", "name", "pk")
        .prefetch_related(Prefetch("pool_entries", queryset=entries))
    )


def describe(runner: Runner, now: datetime) -> StaleRunner:
    """What the retention page and API say of one stale runner (its pool entries
    prefetched)."""
    assert runner.offline_since is not None
    return StaleRunner(
        runner=runner,
        offline_for=now - runner.offline_since,
        github_removes_by=runner.offline_since + GITHUB_OFFLINE_REMOVAL,
        pools=tuple(
            (entry.environment.name, entry.position)
            for entry in runner.pool_entries.all()
        ),
    )


def stale_runners(now: datetime) -> list[StaleRunner]:
    """Every runner proposed for removal at ``now``. Two queries."""
    return [describe(runner, now) for runner in stale_queryset(now)]


def refusal(runner: Runner) -> str:
    """Why ``runner`` may not be removed ("" if it may)."""
    if runner.removed_at is not None:
        return f"{runner.name} is already removed"
    places = list(
        runner.pool_entries.order_by("environment__name").values_list(
            "environment__name", "position"
        )
    )
    if places:
        where = ", ".join(f"{env} (position {pos})" for env, pos in places)
        return (
            f"{runner.name} is in the runner pool of {where}: take it out of the "
            "pool on the environment's page first (pool runners are never removed "
            "automatically)"
        )
    if runner.github_status != "offline" or runner.offline_since is None:
        return (
            f"GitHub does not report {runner.name} offline: only offline runners "
            "are removed here"
        )
    return ""


def remove(runner: Runner, actor: audit.Actor, now: datetime) -> None:
    """Remove a stale runner from GitHub, then mark it removed in the registry.

    1. Refuse (``RemovalRefused``) a runner in a pool, not offline, or removed.
    2. Ask GitHub to delete it, holding no lock (slow I/O); a 404 means GitHub
       removed it already, which is the goal. Any other failure raises
       ``RemovalFailed`` and changes nothing here.
    3. In one transaction: ``removed_at``, a ``removed`` event with the actor,
       and the ``runner.remove`` audit row.
    """
    why = refusal(runner)
    if why:
        audit.record(actor, "runner.remove", runner, outcome=DENIED, refused=why)
        raise RemovalRefused(why)
    offline_since = runner.offline_since
    assert offline_since is not None
    gone_already = False
    if runner.github_id is not None:
        try:
            gateway().delete_runner(runner.github_id)
        except GitHubNotFound:
            gone_already = True
        except GitHubError as exc:
            failed = f"GitHub did not remove {runner.name}: {exc.github_message or exc}"
            audit.record(actor, "runner.remove", runner, outcome=FAILURE, error=failed)
            raise RemovalFailed(failed) from None
    days = (now - offline_since).days
    message = f"removed from GitHub after {days} days offline" + (
        " (GitHub had removed it already)" if gone_already else ""
    )
    with transaction.atomic():
        Runner.objects.filter(pk=runner.pk).update(removed_at=now, updated=now)
        runner.removed_at = now
        runner._log(RunnerEvent.Kind.REMOVED, actor, message)
        audit.record(
            actor,
            "runner.remove",
            runner,
            offline_since=offline_since.isoformat(),
            github_id=runner.github_id,
            github_had_removed_it=gone_already,
        )
