"""An environment's rules for approvals in the control plane (sign-off).

Distinct from GitHub's environment reviewers (``deploys.engine.approval``): these
approvals are given here, by SREs other than the requester, before the deploy is
dispatched at all."""

from __future__ import annotations

from django.db import models

# How long an approval counts by default: long enough for a change window, short
# enough that yesterday's approval does not let today's deploy go.
DEFAULT_SIGNOFF_TTL = 4 * 3600
# Recorded on each deploy when it is requested (``DeployRun.timeouts``).
SIGNOFF_SETTINGS = ("signoffs_required", "signoff_ttl")


class SignOffRules(models.Model):
    """Fields of ``Environment``: how many approvals a deploy needs, how long each
    counts."""

    # Approvals in the control plane a deploy needs before it is dispatched, each
    # from an SRE other than the requester (0: none, the default).
    signoffs_required = models.PositiveSmallIntegerField(
        "approvals required in the control plane", default=0
    )
    # Seconds an approval counts for; one older than this at the gate no longer
    # counts, and the deploy waits for a fresh one.
    signoff_ttl = models.PositiveIntegerField(
        "approval valid for (seconds)", default=DEFAULT_SIGNOFF_TTL
    )

    class Meta:
        abstract = True
