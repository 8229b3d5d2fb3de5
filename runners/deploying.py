"""Closer watch on the runners holding a deploy: faster heartbeats, a targeted check.

A dead host found 10 to 20 s late costs a deploy that much on its way to the next
runner; a dead host that runs no deploy costs nothing until one is sent to it. So
only the runners holding an active deploy attempt are watched closer:

- this check marks them (``Runner.holds_deploy``) and unmarks the others, from the
  runner ids the deploy engine names (``register_holders``, from its ``ready()``);
- the heartbeat answers a marked runner's agent, if it follows the answer, with
  ``HEARTBEAT_DEPLOY_INTERVAL`` (2 s) and gives its heartbeats the
  ``HEARTBEAT_DEPLOY_STALE_AFTER`` deadline (6 s) (``runners.heartbeat``);
- every ``HEALTH_DEPLOY_CHECK_INTERVAL`` (1 s) this check runs the health sweep over
  the marked runners only, with the same hysteresis (``HEALTH_FALL_AFTER``
  observations): their observations count together with the whole-fleet sweep's.

A fleet of 10,000 runners with a few deploys in flight sends about the same number of
heartbeats as before, and the check reads a handful of rows through a partial index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from django.utils import timezone

from runners.health import SweepResult, sweep
from runners.models import Runner

# Each returns the ids of the runners that hold a deploy now; the deploys app
# registers one.
_holders: list[Callable[[], Iterable[int]]] = []


def register_holders(holders: Callable[[], Iterable[int]]) -> None:
    """Name the runners holding a deploy: ``holders()`` returns their ids."""
    if holders not in _holders:
        _holders.append(holders)


def mark_holders() -> tuple[int, int]:
    """Mark the runners holding a deploy and unmark the ones that no longer do:
    ``(marked, unmarked)``. A read of the holders, then two UPDATEs that change
    only the rows whose mark is wrong."""
    ids: set[int] = set()
    for holders in _holders:
        ids.update(holders())
    marked = (
        Runner.objects.filter(pk__in=ids, holds_deploy=False)
        .order_by()
        .update(holds_deploy=True)
    )
    unmarked = (
        Runner.objects.filter(holds_deploy=True)
        .exclude(pk__in=ids)
        .order_by()
        .update(holds_deploy=False)
    )
    return marked, unmarked


def check(now: datetime | None = None) -> SweepResult:
    """Mark the runners holding a deploy, then evaluate their health at ``now``."""
    now = now or timezone.now()
    mark_holders()
    deploying = Runner.objects.filter(holds_deploy=True)
    if not deploying.exists():
        return SweepResult(observed_changes=0, transitions=0)
    return sweep(now, deploying)
