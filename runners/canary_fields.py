"""The canary signal on a runner (an abstract mixin of ``runners.Runner``).

The canary (``diagnostics.canary``) dispatches a tiny job pinned to each pool runner
now and then; these fields hold what its latest run concluded, which the health
sweep reads as the ``CANARY_FAILED`` flag.
"""

from __future__ import annotations

from django.db import models


class CanaryFields(models.Model):
    """What the latest canary job on the runner concluded."""

    # True from a canary not picked up in time or failing until one passes.
    canary_failing = models.BooleanField(default=False)
    # When the latest canary ended (null: none ended yet).
    canary_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
