"""A runner's labels as GitHub matches them, stored in two columns SQL can compare.

GitHub matches labels without case, and every self-hosted runner carries its
default labels (``self-hosted``, its OS, its architecture) and usually its own name
as a label. The inventory's drift check (``inventory.drift``) lets those implicit
labels go unmentioned. Comparing label lists in SQL would need each database's JSON
functions and its own idea of lower case, so each row that holds a runner's labels
(``Runner``, ``inventory.ExpectedRunner``) also stores them split in two, computed
in Python with the drift check's own ``str.lower``:

- ``label_key``: the labels that are not implicit, lower-cased, deduplicated and
  sorted, as JSON text (unambiguous whatever a label holds);
- ``label_defaults``: one bit per implicit label present (``IMPLICIT`` order, then
  the runner's own name).

Both are a function of the row's own ``name`` and ``labels`` only, so they stay
right as long as every write of those recomputes them: ``save()`` does
(:class:`LabelSetFields`: the admin, the factories), so do ``bulk_create`` and
``bulk_update`` (:class:`LabelSetQuerySet`: inventory loads, benchmarks),
``update()`` refuses names and labels without them, and the GitHub sync's upsert,
the one writer in raw SQL, computes them per row (``key_of``). Removal, GitHub ids
and deletion do not touch them: the drift counts read those as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import models

# GitHub's default labels, lower case; the order gives each its bit.
IMPLICIT = ("self-hosted", "linux", "windows", "macos", "x64", "x86", "arm", "arm64")
DEFAULT_LABELS = frozenset(IMPLICIT)
NAME_BIT = 1 << len(IMPLICIT)
KEY_FIELDS = ("label_key", "label_defaults")
_SOURCES = frozenset({"name", "labels"})


def key_of(name: str, labels: Iterable[object] | None) -> tuple[str, int]:
    """``(label_key, label_defaults)`` of a runner named ``name`` carrying (or
    expected to carry) ``labels``."""
    own = name.lower()
    lowered = {str(label).lower() for label in labels or ()}
    bits = sum(1 << i for i, label in enumerate(IMPLICIT) if label in lowered)
    if own in lowered:
        bits |= NAME_BIT
    rest = sorted(lowered - DEFAULT_LABELS - {own})
    return json.dumps(rest), bits


class LabelSetFields(models.Model):
    """``label_key`` and ``label_defaults`` of a model with ``name`` and ``labels``,
    recomputed on every save."""

    label_key = models.TextField(default="[]", editable=False)
    label_defaults = models.PositiveSmallIntegerField(default=0, editable=False)

    if TYPE_CHECKING:
        name: str
        labels: Any

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.refresh_label_set()
        fields = kwargs.get("update_fields")
        if fields is not None and not _SOURCES.isdisjoint(fields):
            kwargs["update_fields"] = {*fields, *KEY_FIELDS}
        super().save(*args, **kwargs)

    def refresh_label_set(self) -> None:
        self.label_key, self.label_defaults = key_of(self.name, self.labels)


_M = TypeVar("_M", bound=LabelSetFields)


class LabelSetQuerySet(models.QuerySet[_M]):
    """Bulk writes that keep the label set in step with ``name`` and ``labels``."""

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        objs = list(objs)
        for obj in objs:
            obj.refresh_label_set()
        fields = kwargs.get("update_fields")
        if fields and not _SOURCES.isdisjoint(fields):
            kwargs["update_fields"] = [*fields, *KEY_FIELDS]
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(
        self, objs: Iterable[_M], fields: Iterable[str], *args: Any, **kwargs: Any
    ) -> int:
        objs, fields = list(objs), list(fields)
        if not _SOURCES.isdisjoint(fields):
            for obj in objs:
                obj.refresh_label_set()
            fields = [*fields, *KEY_FIELDS]
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        # bulk_update() comes here with the label set beside names and labels.
        if not _SOURCES.isdisjoint(kwargs) and not set(KEY_FIELDS) <= set(kwargs):
            # One value for many rows cannot be right: the label set depends on
            # each row's name too.
            raise TypeError(
                "update() cannot set name or labels: save() each row or use "
                "bulk_update(), which keep the label set in step"
            )
        return super().update(**kwargs)
