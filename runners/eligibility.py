"""Whether a runner may take a deploy to one environment, and why not, in words.

The runner's own health state is fleet-wide (``runners.states``); an environment
may relax it with a signal policy: GitHub's status always counts, the heartbeat,
the exporter and the canary job are each *required* (today's rule: the fleet state
decides), *advisory* (a bad reading is shown and explained but does not keep the
runner out) or *ignored* (counts neither for nor against it). A relaxed policy judges the
runner's latest observation (``observed_flags``) with the relaxed signals masked
out, and also the fleet state while its primary reason comes from a signal that
still counts, so hysteresis keeps holding a runner that is recovering on a required
signal. A trust override (``runners.trust``) lifts the health part, never a drain,
a removal or GitHub reporting the runner offline. The registry's hygiene flags
(``runners.hygiene``: a pool runner without its name label, a version below the
minimum) block whatever the policy; a version behind the newest release is a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.db import models

from runners import hygiene
from runners.states import Flag, Reason, State, evaluate_flags

if TYPE_CHECKING:
    from runners.models import Runner


class SignalPolicy(models.TextChoices):
    """How much one runner signal counts for deploys to an environment."""

    # A bad or missing reading keeps the runner out (the fleet state decides).
    REQUIRED = "required", "required"
    # Shown, alerted on and explained, but it does not keep the runner out.
    ADVISORY = "advisory", "advisory"
    # Counts neither for nor against the runner.
    IGNORED = "ignored", "ignored"


# Each policy-controlled signal: its good and bad observation bits (the canary has
# no good bit: a passing canary only clears the bad one).
_SIGNAL_BITS: dict[str, tuple[Flag, Flag]] = {
    "heartbeat": (Flag.HEARTBEAT_FRESH, Flag.HEARTBEAT_STALE),
    "exporter": (Flag.EXPORTER_OK, Flag.EXPORTER_UNREACHABLE),
    "canary": (Flag(0), Flag.CANARY_FAILED),
}
# The reason a bad reading of each signal gives, for advisory notes.
_SIGNAL_REASON: dict[str, Reason] = {
    "heartbeat": Reason.HEARTBEAT_STALE,
    "exporter": Reason.EXPORTER_UNREACHABLE,
    "canary": Reason.CANARY_FAILED,
}
_HOST_PROBLEMS = Flag.DISK_LOW | Flag.LOAD_HIGH

# The signal each fleet-state reason comes from ("host": the heartbeat's facts or
# the exporter's metrics; "github": always counts). Reasons about missing signals
# are absent: the masked observation judges those.
_REASON_SIGNAL: dict[str, str] = {
    Reason.HEARTBEAT_STALE: "heartbeat",
    Reason.EXPORTER_UNREACHABLE: "exporter",
    Reason.GITHUB_OFFLINE: "github",
    Reason.SIGNALS_DISAGREE: "github",
    Reason.REMOVED_FROM_GITHUB: "github",
    Reason.DISK_LOW: "host",
    Reason.LOAD_HIGH: "host",
    Reason.CANARY_FAILED: "canary",
}


@dataclass(frozen=True)
class Verdict:
    """One runner judged for one environment."""

    # Why the runner may not take a deploy (empty: it may).
    blocking: list[str]
    # What is wrong but does not block (advisory signals, an override at work).
    notes: list[str] = field(default_factory=list)
    # A trust override in force counted for this verdict.
    trusted: bool = False

    @property
    def eligible(self) -> bool:
        return not self.blocking


def trust_text(runner: Runner) -> str:
    """The override in words: "trusted by NAME until TIME: reason"."""
    until = runner.trusted_until
    when = f"{until.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if until else "?"
    return (
        f"trusted by {runner.trusted_by or 'someone'} until {when}: "
        f"{runner.trusted_reason}"
    )


def judge(
    runner: Runner,
    now: datetime,
    *,
    heartbeat: str = SignalPolicy.REQUIRED,
    exporter: str = SignalPolicy.REQUIRED,
    canary: str = SignalPolicy.REQUIRED,
    scope: str = "this environment",
) -> Verdict:
    """Judge ``runner`` at ``now`` under a signal policy (``scope`` names the
    environment in the reasons). The default policy is the strict fleet-wide rule:
    removed, drained, or not healthy keeps the runner out."""
    blocking: list[str] = []
    notes: list[str] = []
    if runner.removed_at is not None:
        blocking.append("removed from GitHub")
    if runner.drained:
        blocking.append(
            f"drained by {runner.drained_by or 'someone'}: {runner.drained_reason}"
        )
    # GitHub would not run the job there: no override lifts these.
    blocking += hygiene.blocking(runner)
    notes += hygiene.notes(runner)
    policy = {"heartbeat": heartbeat, "exporter": exporter, "canary": canary}
    if all(p == SignalPolicy.REQUIRED for p in policy.values()):
        health = [_state_text(runner.state, runner.reason)]
        if runner.state == State.HEALTHY:
            health = []
    else:
        health = _relaxed_health(runner, policy, scope, notes)
    trusted = runner.trusted_at_now(now)
    if trusted and runner.github_status == "offline":
        notes.append("trust override not counted: GitHub reports the runner offline")
        trusted = False
    if trusted and health:
        notes.append(f"{'; '.join(health)}: overridden, {trust_text(runner)}")
        health = []
    return Verdict(blocking + health, notes, trusted)


def _state_text(state: str, reason: str) -> str:
    return f"{state} ({Reason(reason).label})" if reason else str(state)


def _relaxed_health(
    runner: Runner, policy: dict[str, str], scope: str, notes: list[str]
) -> list[str]:
    """Why the runner's health keeps it out under a policy that relaxes a signal;
    advisory problems go to ``notes``."""
    flags = Flag(runner.observed_flags)
    masked = flags
    for signal, (good, bad) in _SIGNAL_BITS.items():
        if policy[signal] == SignalPolicy.REQUIRED:
            continue
        if flags & bad and policy[signal] == SignalPolicy.ADVISORY:
            notes.append(f"{_SIGNAL_REASON[signal].label}: advisory for {scope}")
        masked &= ~bad
        if policy[signal] == SignalPolicy.IGNORED:
            masked &= ~good
    # Disk and load problems count when a signal that reported them counts.
    sources = {
        "heartbeat": runner.facts_problems if flags & Flag.HEARTBEAT_FRESH else 0,
        "exporter": runner.exporter_problems if flags & Flag.EXPORTER_OK else 0,
    }
    counted = 0
    for signal, bits in sources.items():
        if policy[signal] == SignalPolicy.REQUIRED:
            counted |= bits
    for signal, bits in sources.items():
        if policy[signal] != SignalPolicy.ADVISORY:
            continue
        for problem in (Flag.DISK_LOW, Flag.LOAD_HIGH):
            if bits & problem & flags and not counted & problem:
                label = (
                    Reason.DISK_LOW if problem == Flag.DISK_LOW else Reason.LOAD_HIGH
                )
                notes.append(f"{label.label} ({signal}): advisory for {scope}")
    masked = (masked & ~_HOST_PROBLEMS) | (flags & _HOST_PROBLEMS & counted)
    state, reasons = evaluate_flags(masked)
    if state != State.HEALTHY:
        return [_state_text(state, reasons[0] if reasons else _missing(masked))]
    # The latest observation is good enough: the fleet state still holds the runner
    # while it falls or recovers on a signal this policy counts.
    source = _REASON_SIGNAL.get(runner.reason, "")
    counts = source == "github" or policy.get(source) == SignalPolicy.REQUIRED
    if runner.state != State.HEALTHY and counts:
        return [_state_text(runner.state, runner.reason)]
    return []


def _missing(flags: Flag) -> str:
    """The reason an unknown observation has (evaluate_flags lists none for it)."""
    if flags & Flag.GITHUB_ONLINE:
        return Reason.GITHUB_ONLY
    if flags & Flag.NEVER_SEEN:
        return Reason.NEVER_SEEN
    return Reason.NO_SIGNAL
