"""API representations of the project-wide records."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlplane.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor_name",
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "outcome",
            "request_id",
            "detail",
        ]
        read_only_fields = fields


class WhoAmISerializer(serializers.Serializer[dict[str, Any]]):
    """Who the caller is, as the API sees them."""

    username = serializers.CharField()
    role = serializers.ChoiceField(choices=["none", "viewer", "sre", "admin"])
    auth = serializers.ChoiceField(
        choices=["token", "session"], help_text="How this request authenticated."
    )
    token_expiry = serializers.DateTimeField(
        allow_null=True,
        help_text="When the token used expires; null for sessions and tokens "
        "without expiry.",
    )


class OptionalURLField(serializers.URLField):
    """A read-only URL that may be unset. The model keeps a blank string; the API
    says null, since ``""`` is not a ``format: uri`` string."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    # null is the point of this field; the stubs type CharField as never null.
    def to_representation(self, value: Any) -> str | None:  # type: ignore[override]
        return str(value) if value else None
