"""REST API pieces shared by every app (the error handler) and the project's own
endpoints: the audit log and ``whoami``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from drf_spectacular.utils import extend_schema
from knox.models import AuthToken
from rest_framework import exceptions, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane.filters import AuditEventFilterSet
from controlplane.models import AuditEvent
from controlplane.permissions import IsViewer, lowest_sufficient_role, role_message
from controlplane.roles import role_of
from controlplane.serializers import AuditEventSerializer, WhoAmISerializer


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = (
        f"request body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
    )
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "conflicts with an existing object"
    default_code = "conflict"


def _only_unique(exc: exceptions.ValidationError) -> bool:
    codes = exc.get_codes()
    if not isinstance(codes, dict) or not codes:
        return False
    return all(value == ["unique"] for value in codes.values())


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's error format; unexpected errors still reach Django's 500 handling.

    A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a JSON 413, not Django's HTML
    400 page.

    A role denial whose permission gave no message of its own (composed
    permissions lose theirs) names the lowest role that would have been allowed.
    """
    if isinstance(exc, RequestDataTooBig):
        # Django would answer its HTML "Bad Request" page; API errors are JSON.
        exc = PayloadTooLarge()
    elif isinstance(exc, exceptions.ValidationError) and _only_unique(exc):
        # The request is valid; it clashes with what exists (a name in use).
        exc = Conflict(exc.detail)
    elif isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        exc = exceptions.ParseError(f"more than {limit} form fields")
    elif isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        exc = exceptions.ParseError(f"more than {limit} files")
    request = context.get("request")
    view = context.get("view")
    if (
        isinstance(exc, exceptions.PermissionDenied)
        and exc.detail == exceptions.PermissionDenied.default_detail
        and isinstance(request, Request)
        and isinstance(view, APIView)
    ):
        role = lowest_sufficient_role(request, view)
        if role is not None:
            exc = exceptions.PermissionDenied(role_message(role))
    return drf_exception_handler(exc, context)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet[AuditEvent]):
    """The audit log, newest first: who did what to which object, and how it ended."""

    queryset = AuditEvent.objects.order_by("-created_at", "-pk")
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    permission_classes = [IsViewer]
    ordering_fields = ["created_at"]
    ordering = ["-created_at", "-pk"]


class WhoAmIView(APIView):
    """The caller's username, role, and token expiry. Open to any signed-in user,
    including one without a role, so a client can see why it is being refused."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=WhoAmISerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        assert isinstance(user, User)  # IsAuthenticated lets only real users in
        token = request.auth if isinstance(request.auth, AuthToken) else None
        data = {
            "username": user.get_username(),
            "role": role_of(user).label,
            "auth": "token" if token is not None else "session",
            "token_expiry": token.expiry if token is not None else None,
        }
        return Response(WhoAmISerializer(data).data)


ERROR_SCHEMA = {
    "type": "object",
    "description": "DRF's error format: `detail` for most errors, field names mapped "
    "to messages for validation errors.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document the errors every endpoint can
    give (401 without credentials, 403 without the role, 404 for an unknown object,
    400 for bad parameters or bodies, 413 for a body too large) so clients, and the schema tests, can rely on
    them. Responses an endpoint documents itself are left alone."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    ref = {"$ref": "#/components/schemas/Error"}
    descriptions = {
        "400": "Invalid parameters or body.",
        "401": "No valid credentials (`Authorization: Token <token>`).",
        "403": "The caller's role is not enough; the message names the role needed.",
        "404": "No such object.",
        "409": "Conflicts with an existing object (e.g. a name in use).",
        "413": "The request body is too large.",
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            params = operation.get("parameters", [])
            codes = ["401", "403"]
            if any(p.get("in") == "path" for p in params):
                codes.append("404")
            if "requestBody" in operation or any(
                p.get("in") == "query" for p in params
            ):
                codes.append("400")
            if "requestBody" in operation:
                codes += ["409", "413"]
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(
                    code,
                    {
                        "description": descriptions[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result
