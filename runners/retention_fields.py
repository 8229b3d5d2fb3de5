"""The runner's retention column, kept apart from ``runners.models`` (see
``runners.retention``)."""

from __future__ import annotations

from django.db import models


class RetentionFields(models.Model):
    """When GitHub started reporting the runner offline, as the sync saw it."""

    # Set by the sync the first time it sees GitHub report the runner offline,
    # cleared when GitHub reports it online again (runners.retention.track_offline).
    # GitHub removes a runner offline for 14 days; this says how long it has been,
    # at least. Not indexed: the retention page and the sync read 10,000 rows in
    # milliseconds, and the heartbeat's HOT updates stay free of another index.
    offline_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
