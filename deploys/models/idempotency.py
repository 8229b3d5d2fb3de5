"""The Idempotency-Keys of deploy requests."""

from __future__ import annotations

from django.db import models

from deploys.models.runs import DeployRun


class IdempotencyRecord(models.Model):
    """An ``Idempotency-Key`` a caller sent with a deploy request.

    The key is reserved (committed) before the deploy is created, so a second
    request with it while the first is in flight finds it and is told so (409);
    the run and the first response are stored with it in the transaction that
    creates the run, so a replay answers exactly what the first request got.
    A refused request releases its key. Records are pruned after
    ``IDEMPOTENCY_KEY_RETENTION``.
    """

    # A key means nothing across callers: "user:<pk>".
    caller = models.CharField(max_length=150)
    key = models.CharField(max_length=200)
    # SHA-256 of the request body the key was first used with.
    fingerprint = models.CharField(max_length=64)
    # When the key was reserved (or an abandoned reservation taken over).
    reserved_at = models.DateTimeField()
    # Null while the first request is in flight.
    run = models.ForeignKey(
        DeployRun, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # The first response's body, for API requests; the UI replays by the run.
    response = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["caller", "key"], name="idempotency_record_caller_key_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["reserved_at"], name="idempotency_reserved_idx")
        ]

    def __str__(self) -> str:
        return f"{self.caller} {self.key}"
