"""API representations of the project-wide records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import QueryDict
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


def json_type_problem(
    field: serializers.Field[Any, Any, Any, Any], value: Any
) -> str | None:
    """Why ``value`` (parsed JSON) is not of the JSON type ``field`` documents, or
    None. DRF coerces: 7 becomes "7" for a string, "true" and 1 become True for a
    boolean, "12" becomes 12 for an integer; the schema promises the type itself."""
    if value is None:
        return None  # allow_null (or its absence) is the field's own check
    if isinstance(field, serializers.ManyRelatedField):
        field, many = field.child_relation, True
    elif isinstance(field, serializers.ListField):
        field, many = field.child, True
    else:
        many = False
    if many:
        if not isinstance(value, list):
            return "must be a JSON array"
        return next(
            (p for p in (json_type_problem(field, item) for item in value) if p), None
        )
    expected: tuple[type, ...]
    if isinstance(field, serializers.MultipleChoiceField):
        return None if isinstance(value, list) else "must be a JSON array"
    if isinstance(field, serializers.ChoiceField):
        # Choices keep their model's type (a weekday is an integer).
        kinds = {type(choice) for choice in field.choices}
        if kinds == {int}:
            expected, name = (int,), "integer"
        else:
            expected, name = (str,), "string"
    elif isinstance(field, serializers.BooleanField):
        expected, name = (bool,), "boolean"
    elif isinstance(field, serializers.IntegerField):
        expected, name = (int,), "integer"
    elif isinstance(field, serializers.FloatField | serializers.DecimalField):
        expected, name = (int, float), "number"
    elif isinstance(
        field,
        serializers.CharField
        | serializers.DateTimeField
        | serializers.DateField
        | serializers.TimeField
        | serializers.SlugRelatedField,
    ):
        expected, name = (str,), "string"
    else:
        return None
    if isinstance(value, bool) and bool not in expected:
        return f"must be a JSON {name}"
    if not isinstance(value, expected):
        return f"must be a JSON {name}"
    # The schema's maxLength is for the string as sent; DRF measures it only after
    # trimming whitespace, so a longer string padded with spaces would pass.
    max_length = getattr(field, "max_length", None)
    if isinstance(field, serializers.CharField) and max_length is not None:
        if isinstance(value, str) and len(value) > max_length:
            return f"Ensure this field has no more than {max_length} characters."
    return None


class JSONTypesMixin:
    """For request serializers: each JSON value must already have its field's
    type (see :func:`json_type_problem`); a form body, all strings, is left to
    DRF's own parsing."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            fields = self._writable_fields  # type: ignore[attr-defined]
            errors = {
                field.field_name: [problem]
                for field in fields
                if field.field_name in data
                and (problem := json_type_problem(field, data[field.field_name]))
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]
