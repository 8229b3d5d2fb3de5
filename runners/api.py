"""``/api/v1/runners/``: the fleet for API clients, with drain, undrain, history and
heartbeat token rotation."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from django.db.models import Model, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from controlplane.pagination import Pagination
from controlplane.permissions import IsAdmin, IsSRE, IsViewer
from runners import trust
from runners.filters import RunnerFilterSet
from runners.models import Runner
from runners.retention_api import StaleRunnerViewSet
from runners.serializers import (
    DrainSerializer,
    HealthSampleSerializer,
    RunnerEventSerializer,
    RunnerSerializer,
    TokenSerializer,
    TrustSerializer,
)

_M = TypeVar("_M", bound=Model)
_Row = TypeVar("_Row")

_NOT_FOUND = OpenApiResponse(description="No runner has this name.")
_DRAIN_ERRORS = {
    400: OpenApiResponse(description="The reason is missing or too long."),
    404: _NOT_FOUND,
}


class RunnerViewSet(viewsets.ReadOnlyModelViewSet[Runner]):
    """Self-hosted runners by name: health state and reasons, signals, drain flag and
    deploy eligibility. Removed runners are hidden unless ``removed`` asks for them."""

    queryset = Runner.objects.order_by("name", "pk").with_pools()
    serializer_class = RunnerSerializer
    filterset_class = RunnerFilterSet
    permission_classes = [IsViewer]
    lookup_field = "name"
    # Runner names are GitHub labels: anything but a slash.
    lookup_value_regex = "[^/]+"
    ordering_fields = ["name", "state", "state_since", "last_heartbeat_at"]
    ordering = ["name", "pk"]

    @extend_schema(
        request=DrainSerializer,
        responses={202: RunnerSerializer, **_DRAIN_ERRORS},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def drain(self, request: Request, name: str) -> Response:
        """Take the runner out of deploy rotation, whatever its health (audited)."""
        runner = self.get_object()
        body = DrainSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        runner.drain(request.user, body.validated_data["reason"])
        return self._accepted(runner)

    @extend_schema(request=None, responses={202: RunnerSerializer, 404: _NOT_FOUND})
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def undrain(self, request: Request, name: str) -> Response:
        """Put the runner back into deploy rotation (audited)."""
        runner = self.get_object()
        if runner.drained:
            runner.undrain(request.user)
        return self._accepted(runner)

    @extend_schema(
        request=TrustSerializer,
        responses={
            202: RunnerSerializer,
            400: OpenApiResponse(
                description="The reason or duration is invalid, or the runner "
                "cannot be trusted (GitHub reports it offline, or no longer lists it)."
            ),
            404: _NOT_FOUND,
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def trust(self, request: Request, name: str) -> Response:
        """Trust the runner for deploys for up to 24 hours, with a reason: deploys
        may go to it whatever its health or an environment's signal policy. Ends by
        itself; never for a runner GitHub reports offline (audited)."""
        runner = self.get_object()
        body = TrustSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        hours = body.validated_data["hours"]
        try:
            trust.grant(
                runner,
                request.user,
                body.validated_data["reason"],
                timedelta(hours=hours),
                timezone.now(),
            )
        except trust.TrustRefused as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return self._accepted(runner)

    @extend_schema(request=None, responses={202: RunnerSerializer, 404: _NOT_FOUND})
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def untrust(self, request: Request, name: str) -> Response:
        """End the runner's trust override now (audited; nothing if none is in
        force)."""
        runner = self.get_object()
        trust.clear(runner, request.user, timezone.now())
        return self._accepted(runner)

    @extend_schema(
        request=None,
        responses={200: TokenSerializer, 404: _NOT_FOUND},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="rotate-token",
        permission_classes=[IsAdmin],
    )
    def rotate_token(self, request: Request, name: str) -> Response:
        """Issue a new heartbeat token and return it: the only time it is shown. The
        previous token stops working at once (audited, never logged)."""
        runner = self.get_object()
        token = runner.issue_heartbeat_token(request.user)
        response = Response(TokenSerializer({"name": runner.name, "token": token}).data)
        # Keep the one copy of the token out of any cache on the way.
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        responses={200: HealthSampleSerializer(many=True), 404: _NOT_FOUND},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def samples(self, request: Request, name: str) -> Response:
        """The runner's health samples (one per signal change), newest first."""
        runner = self.get_object()
        samples = runner.health_samples.order_by("-observed_at", "-pk")
        return self._page(request, samples, HealthSampleSerializer)

    @extend_schema(
        responses={200: RunnerEventSerializer(many=True), 404: _NOT_FOUND},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def events(self, request: Request, name: str) -> Response:
        """The runner's events (health transitions, drains, token rotations), newest
        first."""
        runner = self.get_object()
        events = runner.events.order_by("-created_at", "-pk")
        return self._page(request, events, RunnerEventSerializer)

    def filter_queryset(
        self, queryset: QuerySet[Runner, _Row]
    ) -> QuerySet[Runner, _Row]:
        # Filters (and the default hiding of removed runners) narrow the list only; a
        # runner's own URL finds it whether or not GitHub still lists it.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def _page(
        self,
        request: Request,
        queryset: QuerySet[_M],
        serializer_class: type[serializers.ModelSerializer[_M]],
    ) -> Response:
        """One limit/offset page of a runner's history, in the list envelope."""
        # The project's paginator, so the history endpoints check limit/offset too.
        paginator = Pagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)

    def _accepted(self, runner: Runner) -> Response:
        runner.refresh_from_db()
        data = self.get_serializer(runner).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


router = SimpleRouter(trailing_slash=True)
router.register("runners", RunnerViewSet, basename="runner")
router.register("stale-runners", StaleRunnerViewSet, basename="stale-runner")
