from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlplane.serializers import JSONTypesMixin
from inventory.expected import FORMATS
from inventory.models import InventoryLoad


class InventoryLoadSerializer(serializers.ModelSerializer[InventoryLoad]):
    format = serializers.CharField(source="fmt", read_only=True)

    class Meta:
        model = InventoryLoad
        fields = [
            "id",
            "source",
            "loaded_at",
            "actor_name",
            "filename",
            "format",
            "accepted",
            "error",
            "error_line",
            "hosts",
        ]
        read_only_fields = fields


class InventoryUploadSerializer(JSONTypesMixin, serializers.Serializer[Any]):
    """An inventory sent by an API client: its text and how to read it."""

    content = serializers.CharField(
        trim_whitespace=False,
        help_text="The inventory's text: Ansible INI or YAML, or one runner name "
        "per line.",
    )
    format = serializers.ChoiceField(
        choices=FORMATS,
        default="auto",
        help_text="auto (YAML when the text is a YAML mapping, else INI), ini, "
        "yaml or list.",
    )
    filename = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=500,
        help_text="A name to remember the load by (its extension also guides auto).",
    )
