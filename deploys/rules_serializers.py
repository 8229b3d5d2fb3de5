"""The deploy rules of an environment in its API representation (``promote_from`` by
name, ``promotion_period_hours``, ``allowed_refs``), checked as the admin checks them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from deploys.models import Environment
from deploys.models.rules_fields import promotion_source_problem

RULE_FIELDS = ["promote_from", "promotion_period_hours", "allowed_refs"]


class DeployRulesSerializerMixin(serializers.Serializer[Any]):
    """Declares ``promote_from`` by environment name and checks the source."""

    promote_from = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Environment.objects.all(),
        allow_null=True,
        required=False,
        help_text="Promotion: the environment a commit must have succeeded in (its "
        "exact SHA, within promotion_period_hours) before it may be deployed here; "
        "a commit that already succeeded here counts too. Null: no promotion rule.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        instance = self.instance if isinstance(self.instance, Environment) else None
        if "promote_from" in attrs or "repository" in attrs:
            probe = Environment(
                pk=instance.pk if instance else None,
                repository=attrs.get(
                    "repository", instance.repository if instance else ""
                ),
            )
            source = attrs.get(
                "promote_from", instance.promote_from if instance else None
            )
            problem = promotion_source_problem(probe, source)
            if problem:
                raise serializers.ValidationError({"promote_from": problem})
        return attrs
