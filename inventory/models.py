"""The fleet's intended inventory: each load (from the file, an admin upload or the
API) and the runners the one in force expects."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from runners.label_sets import LabelSetFields, LabelSetQuerySet


class InventoryLoadQuerySet(models.QuerySet["InventoryLoad"]):
    def in_force(self) -> InventoryLoad | None:
        """The newest accepted load: the inventory drift is measured against."""
        return self.filter(accepted=True).order_by("-loaded_at", "-pk").first()


class InventoryLoad(models.Model):
    """One attempt to load the inventory: where it came from, who loaded it, what
    it held, and (when refused) why. A refused load replaces nothing."""

    class Source(models.TextChoices):
        FILE = "file", "INVENTORY_PATH file"
        UPLOAD = "upload", "admin upload"
        API = "api", "API"

    source = models.CharField(max_length=10, choices=Source.choices)
    loaded_at = models.DateTimeField()
    loaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_name = models.CharField(max_length=150, blank=True)
    # The file's path (file loads) or the uploaded file's name.
    filename = models.CharField(max_length=500, blank=True)
    fmt = models.CharField("format", max_length=10)
    # SHA-256 of the text: the file watch re-reads only a changed file.
    digest = models.CharField(max_length=64)
    accepted = models.BooleanField(default=True)
    error = models.TextField(blank=True)
    error_line = models.PositiveIntegerField(null=True, blank=True)
    hosts = models.PositiveIntegerField(default=0)

    objects = InventoryLoadQuerySet.as_manager()

    class Meta:
        ordering = ["-loaded_at", "-pk"]
        indexes = [
            # in_force(): the newest accepted load.
            models.Index(
                fields=["-loaded_at", "-id"],
                condition=Q(accepted=True),
                name="inventoryload_in_force",
            ),
        ]

    def __str__(self) -> str:
        outcome = f"{self.hosts} runners" if self.accepted else "refused"
        return f"{self.get_source_display()} load at {self.loaded_at:%Y-%m-%d %H:%M} ({outcome})"


class ExpectedRunner(LabelSetFields, models.Model):
    """A runner the inventory in force says should exist, with the labels it
    should carry (null: the inventory declares none, so they are not checked) and
    their label set, compared with the registered runner's in SQL
    (``inventory.drift.counts``)."""

    load = models.ForeignKey(
        InventoryLoad, on_delete=models.CASCADE, related_name="expected"
    )
    name = models.CharField(max_length=100)
    host = models.CharField(max_length=255)
    labels = models.JSONField(null=True, blank=True)
    groups = models.JSONField(default=list, blank=True)
    line = models.PositiveIntegerField(null=True, blank=True)

    objects = LabelSetQuerySet["ExpectedRunner"].as_manager()

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["load", "name"], name="expectedrunner_unique_name"
            )
        ]

    def __str__(self) -> str:
        return self.name if self.name == self.host else f"{self.name} ({self.host})"
