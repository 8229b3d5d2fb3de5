"""An environment's canary settings (an abstract mixin of ``deploys.Environment``).

The canary (``diagnostics.canary``) proves each pool runner still takes jobs; these
fields say how often, and how much a failed canary counts for deploys here.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator
from django.db import models

from runners.eligibility import SignalPolicy


class CanaryFields(models.Model):
    """How often the pool's runners get a canary job, and what a failure means."""

    # Minutes between canaries on each pool runner (0: no canaries); stretched when
    # the fleet's pools would spend more than CANARY_BUDGET_SHARE of the API limit.
    canary_interval_minutes = models.PositiveIntegerField(
        default=30, validators=[MaxValueValidator(7 * 24 * 60)]
    )
    # A runner whose latest canary failed: kept out (required), shown only
    # (advisory) or not judged on it (ignored), like the heartbeat and exporter.
    canary_policy = models.CharField(
        max_length=10, choices=SignalPolicy.choices, default=SignalPolicy.REQUIRED
    )

    class Meta:
        abstract = True
