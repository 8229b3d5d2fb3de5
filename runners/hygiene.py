"""What the registry's hygiene flags mean for deploys, in words, and their runbooks.

Both block deploys when GitHub itself would never run the job: a pool runner
without its name label cannot be targeted, and a runner below the minimum version
GitHub enforces is refused jobs. A runner only behind the newest release is noted,
not kept out: GitHub's own deadline for it is not visible from here, and a deploy
GitHub does not start fails over at the pickup timeout anyway. Neither is lifted by
a trust override: no one's word makes GitHub hand the runner the job.
"""

from __future__ import annotations

from typing import Protocol

from runners.hygiene_fields import VersionStatus


class Runner(Protocol):
    """What these rules read of a ``runners.Runner`` (which imports this module)."""

    name: str
    missing_name_label: bool
    version_outdated: str
    version_note: str


VERSION_RUNBOOK = "runner-version-outdated"
NAME_LABEL_RUNBOOK = "runner-missing-name-label"


def name_label_text(runner: Runner) -> str:
    return (
        f"missing its name label {runner.name}: the deploy workflow's "
        f"runs-on [self-hosted, {runner.name}] cannot reach it"
    )


def version_text(runner: Runner) -> str:
    return f"runner version outdated: {runner.version_note}"


def blocking(runner: Runner) -> list[str]:
    """Why GitHub would never run a deploy's job on ``runner`` (empty: it would)."""
    why: list[str] = []
    if runner.missing_name_label:
        why.append(name_label_text(runner))
    if runner.version_outdated == VersionStatus.BELOW_MINIMUM:
        why.append(version_text(runner))
    return why


def notes(runner: Runner) -> list[str]:
    """What is flagged but does not keep ``runner`` out."""
    if runner.version_outdated == VersionStatus.BEHIND_LATEST:
        return [f"{version_text(runner)} (deploys still go to it)"]
    return []
