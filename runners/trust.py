"""Trust overrides: an SRE vouches for a runner's deploys for a bounded time.

An override lets deploys go to a runner whatever its health state or an
environment's signal policy says (``runners.eligibility``), for at most
``MAX_TRUST`` and with a reason. It ends by itself: expiry is judged at read time
(``Runner.trusted_at_now``), no task ends it. It is never granted to a runner GitHub
reports offline or no longer lists, and one in force stops counting when GitHub
reports the runner offline. Granting and clearing are audited and written to the
runner's timeline. The fields stay after expiry so that the
``ControlPlaneRunnerTrustOutlived`` alert can see an override that ran out while the
runner is still not healthy; clearing early empties them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from controlplane import audit
from runners.models import Runner, RunnerEvent

MAX_TRUST = timedelta(hours=24)
MIN_TRUST = timedelta(minutes=1)


class TrustRefused(ValueError):
    """The override cannot be granted; the message says why and what to do."""


def refusal(runner: Runner, duration: timedelta, reason: str) -> str:
    """Why an override of ``runner`` for ``duration`` cannot be granted ("" if it
    can)."""
    if not reason.strip():
        return "a reason is needed to trust a runner"
    if not MIN_TRUST <= duration <= MAX_TRUST:
        return "the override lasts from 1 minute to 24 hours"
    if runner.removed_at is not None:
        return f"{runner.name} is no longer listed by GitHub: it cannot take jobs"
    if runner.github_status == "offline":
        return (
            f"GitHub reports {runner.name} offline: it cannot take jobs, so it "
            "cannot be trusted for deploys; bring the runner service back first"
        )
    return ""


def grant(
    runner: Runner,
    actor: audit.Actor,
    reason: str,
    duration: timedelta,
    now: datetime,
) -> None:
    """Trust ``runner`` for deploys from ``now`` for ``duration`` (replacing an
    override in force). Raises ``TrustRefused`` saying why not."""
    reason = reason.strip()
    why = refusal(runner, duration, reason)
    if why:
        raise TrustRefused(why)
    with transaction.atomic():
        runner.trusted_until = now + duration
        runner.trusted_by = audit.actor_name(actor)
        runner.trusted_reason = reason[:500]
        runner.trusted_at = now
        runner.save(update_fields=[*_FIELDS, "updated"])
        until = f"{runner.trusted_until:%Y-%m-%d %H:%M} UTC"
        runner._log(RunnerEvent.Kind.TRUSTED, actor, f"until {until}: {reason}")
        audit.record(
            actor,
            "runner.trust",
            runner,
            reason=reason,
            until=runner.trusted_until.isoformat(),
        )


def clear(runner: Runner, actor: audit.Actor, now: datetime) -> bool:
    """End the override early, or dismiss one that ran out (which ends the
    ``ControlPlaneRunnerTrustOutlived`` alert), audited. False when there is
    neither."""
    if runner.trusted_until is None:
        return False
    in_force = runner.trusted_at_now(now)
    with transaction.atomic():
        reason = runner.trusted_reason
        runner.trusted_until = None
        runner.trusted_by = ""
        runner.trusted_reason = ""
        runner.trusted_at = None
        runner.save(update_fields=[*_FIELDS, "updated"])
        how = "ended early" if in_force else "dismissed after it ran out"
        runner._log(RunnerEvent.Kind.UNTRUSTED, actor, f"{how}: {reason}")
        audit.record(actor, "runner.untrust", runner, reason=reason, how=how)
    return True


_FIELDS = ("trusted_until", "trusted_by", "trusted_reason", "trusted_at")
