"""``/api/v1/environments/``, ``/api/v1/freeze-windows/`` and ``/api/v1/deploys/``:
deploy targets, when they are frozen, and deploy runs."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from controlplane import audit
from controlplane.filters import FilterBackend
from controlplane.permissions import IsAdmin, IsSRE, IsViewer, ReadOnly
from deploys.action_serializers import (
    CancelSerializer,
    PauseSerializer,
    RedeploySerializer,
    ReviewSerializer,
)
from deploys.commits import deployed_now
from deploys.engine import approval
from deploys.filters import DeployRunFilterSet, FreezeWindowFilterSet
from deploys.models import DeployRun, Environment, FreezeWindow
from deploys.pausing import PauseError, pause, resume
from deploys.redeploy import redeploy_last_good, rollback
from deploys.request_errors import (
    DeployRequestError,
    GitHubUnreachable,
    IdempotencyInProgress,
    JiraUnreachable,
)
from deploys.serializers import (
    DeployedSerializer,
    DeployErrorSerializer,
    DeployRequestSerializer,
    DeployRunDetailSerializer,
    DeployRunSerializer,
    EnvironmentSerializer,
    FreezeWindowSerializer,
)
from deploys.signoff_api import SignOffActions
from deploys.triggers import DeployRequest, request_deploy

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Retry safely: the same key and body give the same deploy (kept for good, "
        "scoped to the caller); the same key with another body is refused (422)."
    ),
)


class EnvironmentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[Environment],
):
    """Deploy targets with their ordered runner pools and safeguards. SREs read,
    admins write (audited). Environments are never deleted: their deploys are the
    history."""

    # Freeze windows once per page: the windows, "frozen" and "frozen_until" read them.
    queryset = (
        Environment.objects.select_related("promote_from")
        .prefetch_related("freeze_windows")
        .order_by("name", "pk")
    )
    serializer_class = EnvironmentSerializer
    permission_classes = [IsSRE & ReadOnly | IsAdmin]
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    filter_backends: list[Any] = []

    def perform_create(
        self, serializer: serializers.BaseSerializer[Environment]
    ) -> None:
        env = serializer.save()
        audit.record(self.request.user, "environment.create", env)

    def perform_update(
        self, serializer: serializers.BaseSerializer[Environment]
    ) -> None:
        env = serializer.save()
        audit.record(
            self.request.user,
            "environment.update",
            env,
            fields=sorted(serializer.validated_data),
        )

    @extend_schema(request=PauseSerializer, responses={200: EnvironmentSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def pause(self, request: Request, name: str) -> Response:
        """Pause the environment's deploys with a reason (SREs, audited as
        ``environment.pause``): new requests are refused, queued ones wait."""
        return self._pause_or_resume(request, pause, reason_required=True)

    @extend_schema(request=PauseSerializer, responses={200: EnvironmentSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def resume(self, request: Request, name: str) -> Response:
        """Resume the environment's deploys (SREs, audited as
        ``environment.resume``; ``reason`` is an optional note). 409 if not paused."""
        return self._pause_or_resume(request, resume, reason_required=False)

    def _pause_or_resume(
        self, request: Request, change: Any, *, reason_required: bool
    ) -> Response:
        env = self.get_object()
        body = PauseSerializer(data=request.data, partial=not reason_required)
        body.is_valid(raise_exception=True)
        try:
            env = change(request.user, env, body.validated_data.get("reason", ""))
        except PauseError as exc:
            code = 400 if reason_required else status.HTTP_409_CONFLICT
            return Response({"detail": exc.message}, status=code)
        env = self.get_queryset().get(pk=env.pk)
        return Response(self.get_serializer(env).data)


# What a freeze window's audit rows describe, and compare before and after a change.
WINDOW_AUDITED = (
    "environment_id",
    "kind",
    "reason",
    "starts_at",
    "ends_at",
    "weekday",
    "start_time",
    "duration_minutes",
)


@extend_schema_view(
    list=extend_schema(
        description="Freeze windows by environment name, with whether each is in "
        "force now (the environment's ``frozen_until`` says when its freeze ends)."
    ),
    create=extend_schema(
        description="Add a window (audited). A shape the database would refuse is "
        "a 400 naming the field."
    ),
    update=extend_schema(
        description="Replace a window (audited). Fields left out keep their values, "
        "except the other kind's, which are cleared."
    ),
    partial_update=extend_schema(
        description="Change some of a window's fields (audited); changing ``kind`` "
        "needs only the new kind's fields."
    ),
    destroy=extend_schema(description="Delete a window (audited)."),
)
class FreezeWindowViewSet(viewsets.ModelViewSet[FreezeWindow]):
    """Freeze windows: while one is in force, deploys to its environment are
    refused at request time (unless an admin breaks glass) and a deploy requested
    earlier fails at the gate instead of starting. SREs read, admins write
    (audited)."""

    queryset = FreezeWindow.objects.select_related("environment").order_by(
        "environment__name", "pk"
    )
    serializer_class = FreezeWindowSerializer
    filterset_class = FreezeWindowFilterSet
    permission_classes = [IsSRE & ReadOnly | IsAdmin]
    filter_backends = [FilterBackend]
    lookup_value_regex = "[0-9]+"

    def perform_create(
        self, serializer: serializers.BaseSerializer[FreezeWindow]
    ) -> None:
        with transaction.atomic():
            window = serializer.save()
            audit.record(
                self.request.user,
                "freeze_window.create",
                window,
                **window.audit_detail(),
            )

    def perform_update(
        self, serializer: serializers.BaseSerializer[FreezeWindow]
    ) -> None:
        before = {name: getattr(serializer.instance, name) for name in WINDOW_AUDITED}
        with transaction.atomic():
            window = serializer.save()
            changed = [n for n in WINDOW_AUDITED if getattr(window, n) != before[n]]
            audit.record(
                self.request.user,
                "freeze_window.update",
                window,
                fields=[n.removesuffix("_id") for n in changed],
                **window.audit_detail(),
            )

    def perform_destroy(self, instance: FreezeWindow) -> None:
        with transaction.atomic():
            audit.record(
                self.request.user,
                "freeze_window.delete",
                instance,
                **instance.audit_detail(),
            )
            instance.delete()


def _refusal(exc: DeployRequestError) -> Response:
    if exc.status == status.HTTP_400_BAD_REQUEST and exc.field and not exc.extra:
        return Response({exc.field: [exc.message]}, status=exc.status)
    response = Response(
        {"detail": exc.message, "code": exc.code, "field": exc.field, **exc.extra},
        status=exc.status,
    )
    if isinstance(exc, IdempotencyInProgress):
        response["Retry-After"] = "1"
    if isinstance(exc, GitHubUnreachable | JiraUnreachable):
        response["Retry-After"] = "30"
    return response


class DeployRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    SignOffActions,
):
    """Deploy runs, newest first. Viewers read; SREs request, cancel, approve and
    reject (approvals in the control plane)."""

    queryset = DeployRun.objects.with_latest_attempt().order_by("-created_at", "-pk")
    serializer_class = DeployRunSerializer
    filterset_class = DeployRunFilterSet
    permission_classes = [IsViewer & ReadOnly | IsSRE]
    ordering_fields = ["created_at", "finished_at"]
    ordering = ["-created_at", "-pk"]

    def get_queryset(self) -> QuerySet[DeployRun]:
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("attempts__runner", "events__attempt")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer[DeployRun]]:
        if self.action in (
            "retrieve",
            "create",
            "cancel",
            "redeploy_last_good",
            "rollback",
        ):
            return DeployRunDetailSerializer
        return DeployRunSerializer

    @extend_schema(
        request=DeployRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: DeployRunDetailSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A field is wrong (``{field: [message]}``), or a deploy "
                "rule refuses it: ``code`` ``ref_not_allowed`` or ``not_promoted``, "
                "``rules`` each rule's facts (``promote``: where to deploy first).",
            ),
            409: OpenApiResponse(
                DeployErrorSerializer,
                description="Refused: the environment is paused, one is already "
                "running (reject policy), or the key's first request is in flight "
                "(retry after ``Retry-After``).",
            ),
            422: OpenApiResponse(
                DeployErrorSerializer,
                description="The Idempotency-Key was used with another body.",
            ),
            503: OpenApiResponse(
                DeployErrorSerializer,
                description="GitHub did not answer when resolving the ref to its "
                "commit, or JIRA when checking the change ticket; nothing was "
                "created (retry after ``Retry-After``).",
            ),
        },
    )
    def create(self, request: Request) -> Response:
        """Request a deploy: queued at once, started when the environment is free
        (202). A replay of an idempotent request answers with the same deploy and
        ``Idempotent-Replayed: true``."""
        body = DeployRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = request_deploy(
                request.user,
                body.validated_data["environment"],
                body.validated_data.get("ref", ""),
                body.validated_data.get("change_ticket", ""),
                request.headers.get("Idempotency-Key", ""),
                body.validated_data.get("break_glass_reason", ""),
                respond=self._render,
                sha=body.validated_data.get("sha", ""),
            )
        except DeployRequestError as exc:
            return _refusal(exc)
        return self._respond(result)

    @extend_schema(
        request=RedeploySerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: DeployRunDetailSerializer,
            409: OpenApiResponse(
                DeployErrorSerializer,
                description="Refused by the environment's safeguards, or the "
                "key's first request is in flight (retry after ``Retry-After``).",
            ),
            422: OpenApiResponse(
                DeployErrorSerializer,
                description="The Idempotency-Key was used with another body.",
            ),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="redeploy-last-good",
        permission_classes=[IsSRE],
    )
    def redeploy_last_good(self, request: Request) -> Response:
        """Deploy the environment's last succeeded ref again, through the same gates
        (202)."""
        body = RedeploySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = redeploy_last_good(
                request.user,
                body.validated_data["environment"],
                request.headers.get("Idempotency-Key", ""),
                body.validated_data.get("break_glass_reason", ""),
                respond=self._render,
            )
        except DeployRequestError as exc:
            return _refusal(exc)
        return self._respond(result)

    @extend_schema(
        request=RedeploySerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: DeployRunDetailSerializer,
            409: OpenApiResponse(
                DeployErrorSerializer,
                description="Refused by the environment's safeguards, or the "
                "key's first request is in flight (retry after ``Retry-After``).",
            ),
        },
    )
    @action(detail=False, methods=["post"], permission_classes=[IsSRE])
    def rollback(self, request: Request) -> Response:
        """Deploy again the commit the environment ran before its current one (its
        latest succeeded deploy of another SHA), through the same gates; audited
        with both SHAs (202)."""
        body = RedeploySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = rollback(
                request.user,
                body.validated_data["environment"],
                request.headers.get("Idempotency-Key", ""),
                body.validated_data.get("break_glass_reason", ""),
                respond=self._render,
            )
        except DeployRequestError as exc:
            return _refusal(exc)
        return self._respond(result)

    @extend_schema(
        request=CancelSerializer,
        responses={
            202: DeployRunDetailSerializer,
            409: OpenApiResponse(
                DeployErrorSerializer, description="The deploy already finished."
            ),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel the deploy and its GitHub run (audited). Cancelling a cancelled
        deploy again is accepted and changes nothing."""
        run = self.get_object()
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not run.cancel(request.user, body.validated_data.get("note", "")):
            if run.state != DeployRun.State.CANCELLED:
                return Response(
                    {
                        "detail": f"the deploy already {run.state}",
                        "code": "finished",
                        "field": "",
                    },
                    status=status.HTTP_409_CONFLICT,
                )
        return self._detail(run.pk)

    @extend_schema(
        request=ReviewSerializer,
        responses={
            202: DeployRunDetailSerializer,
            403: OpenApiResponse(
                DeployErrorSerializer,
                description="GitHub says the control plane's user may not review.",
            ),
            409: OpenApiResponse(
                DeployErrorSerializer, description="Nothing waits for a review."
            ),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def review(self, request: Request, pk: str) -> Response:
        """Approve or reject in GitHub the deployment its environment's required
        reviewers hold (audited, with the comment)."""
        run = self.get_object()
        body = ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            approval.review(
                run,
                request.user,
                body.validated_data["state"],
                body.validated_data.get("comment", ""),
            )
        except approval.ReviewRefused as exc:
            return Response(
                {"detail": exc.detail, "code": exc.code, "field": ""},
                status=exc.status,
            )
        return self._detail(run.pk)

    def _render(self, run: DeployRun) -> dict[str, Any]:
        self.action = "retrieve"
        fresh = self.get_queryset().get(pk=run.pk)
        return dict(
            DeployRunDetailSerializer(fresh, context=self.get_serializer_context()).data
        )

    def _respond(self, result: DeployRequest) -> Response:
        """The first response to a request; a replay answers the same body (or the
        run as it is now, for a key first used where no body was rendered)."""
        data = result.response
        if data is None:
            data = self._render(result.run)
        response = Response(data, status=status.HTTP_202_ACCEPTED)
        if not result.created:
            response["Idempotent-Replayed"] = "true"
        return response

    def _detail(self, pk: int) -> Response:
        run = self.get_queryset().get(pk=pk)
        return Response(self._render(run), status=status.HTTP_202_ACCEPTED)


class DeployedNowViewSet(viewsets.GenericViewSet[Any]):
    """What every environment runs now: ``GET /api/v1/deployed-now/``."""

    serializer_class = DeployedSerializer
    permission_classes = [IsViewer]
    pagination_class = None
    filter_backends: list[Any] = []

    @extend_schema(responses=DeployedSerializer(many=True))
    def list(self, request: Request) -> Response:
        """Per environment, the commit deployed now: SHA, ref, who, when, change
        ticket, runner, GitHub run and deployment, and the compare view against the
        previous deploy."""
        return Response(DeployedSerializer(deployed_now(), many=True).data)


router = SimpleRouter(trailing_slash=True)
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("freeze-windows", FreezeWindowViewSet, basename="freeze-window")
router.register("deploys", DeployRunViewSet, basename="deploy")
router.register("deployed-now", DeployedNowViewSet, basename="deployed-now")
