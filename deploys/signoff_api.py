"""``POST /api/v1/deploys/<id>/approve/`` and ``reject/``: approvals in the control
plane (not GitHub's reviews, which are ``review/``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.permissions import IsAdmin, IsSRE
from deploys import signoff
from deploys.models import DeployRun
from deploys.serializers import DeployErrorSerializer, DeployRunDetailSerializer
from deploys.signoff_serializers import SignOffDecisionSerializer

Act = Callable[[DeployRun, User | AnonymousUser, str], Any]

RESPONSES = {
    202: DeployRunDetailSerializer,
    400: OpenApiResponse(description="The reason is missing (reject) or too long."),
    403: OpenApiResponse(
        DeployErrorSerializer,
        description="Not an SRE (an admin, to break glass), or the requester "
        "(two-person rule).",
    ),
    409: OpenApiResponse(
        DeployErrorSerializer,
        description="Nothing to decide: the deploy finished, was dispatched, needs "
        "no approval, had them skipped by break-glass, or you already approved.",
    ),
}


class SignOffActions(viewsets.GenericViewSet[DeployRun]):
    """The deploys viewset's approve and reject actions."""

    @extend_schema(request=SignOffDecisionSerializer, responses=RESPONSES)
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve the deploy in the control plane, as an SRE who did not request
        it (audited, on its timeline); it goes on once enough approvals are in.
        An approval counts for the environment's ``signoff_ttl`` seconds."""
        return self._decide(request, signoff.approve)

    @extend_schema(request=SignOffDecisionSerializer, responses=RESPONSES)
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def reject(self, request: Request, pk: str) -> Response:
        """Reject the deploy in the control plane with a ``reason``: it fails with
        reason ``rejected`` (audited)."""
        return self._decide(request, signoff.reject)

    @extend_schema(request=SignOffDecisionSerializer, responses=RESPONSES)
    @action(
        detail=True,
        methods=["post"],
        url_path="break-glass",
        permission_classes=[IsAdmin],
    )
    def break_glass(self, request: Request, pk: str) -> Response:
        """Admins: skip the approvals in the control plane the deploy still awaits,
        with a ``reason`` (audited ``deploy.break_glass``, flagged as break-glass
        wherever the deploy is shown); it goes on at once."""
        return self._decide(request, signoff.break_glass)

    def _decide(self, request: Request, act: Act) -> Response:
        run = self.get_object()
        body = SignOffDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            act(run, request.user, body.validated_data.get("reason", ""))
        except signoff.SignOffRefused as exc:
            if exc.status == status.HTTP_400_BAD_REQUEST and exc.field:
                return Response({exc.field: [exc.message]}, status=exc.status)
            return Response(
                {"detail": exc.message, "code": exc.code, "field": exc.field},
                status=exc.status,
            )
        fresh = self.get_queryset().get(pk=run.pk)
        data = DeployRunDetailSerializer(fresh, context=self.get_serializer_context())
        return Response(data.data, status=status.HTTP_202_ACCEPTED)
