"""The registry's hygiene columns on ``Runner`` (its version against GitHub's version
rules, its name label) and the newest runner release GitHub offers.

Writers: ``runners.versions`` alone writes the version columns and
``RunnerRelease``; ``runners.name_labels`` alone writes ``missing_name_label``.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class VersionStatus(models.TextChoices):
    """How a runner's version stands against the version rules."""

    # Current, or not known (unknown is shown as such, never as outdated).
    CURRENT = "", "current"
    # Below RUNNER_VERSION_MINIMUM: GitHub refuses it jobs; deploys pass it over.
    BELOW_MINIMUM = "below_minimum", "below the minimum"
    # More than RUNNER_VERSION_MAX_MINOR_BEHIND minor versions behind the newest
    # release: shown and alerted on, deploys still go to it.
    BEHIND_LATEST = "behind_latest", "behind the latest release"


class RunnerHygieneFields(models.Model):
    """A runner's version and name-label flags (mixed into ``runners.Runner``)."""

    # The runner application's version as last read: GitHub's runner list, else
    # the heartbeat's facts, else the latest diagnostics report ("" while unknown).
    runner_version = models.CharField(max_length=64, blank=True)
    # Where it was read: "github" (the runner list), "heartbeat" or "diagnostics";
    # GitHub's own reading wins, it is the one GitHub enforces its rules on.
    runner_version_source = models.CharField(max_length=12, blank=True)
    version_outdated = models.CharField(
        max_length=20, choices=VersionStatus.choices, blank=True, default=""
    )
    # The rule that flagged it, in words ("2.300.0 is below the minimum 2.320.0").
    version_note = models.CharField(max_length=200, blank=True)
    # A pool runner whose labels (as GitHub lists them) lack its own name: the
    # deploy workflow's `runs-on: [self-hosted, <name>]` can never reach it.
    missing_name_label = models.BooleanField(default=False)

    class Meta:
        abstract = True


class RunnerRelease(models.Model):
    """The newest runner application GitHub offers, as its downloads endpoint says."""

    # The endpoint read (repository or organization scope).
    scope = models.CharField(max_length=300, unique=True)
    # "" until a read succeeded.
    latest_version = models.CharField(max_length=64, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    # The version check reads the endpoint again once this passes.
    next_fetch_at = models.DateTimeField(default=timezone.now)
    # Why the last read failed ("" after a success).
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        app_label = "runners"
        ordering = ["scope", "pk"]

    def __str__(self) -> str:
        return f"runner release of {self.scope}: {self.latest_version or '?'}"
