"""``/api/v1/runner-diagnostics/<runner>/``: diagnostics and agent installs without
SSH, for API clients. Reading is for viewers; running is for SREs (audited)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from controlplane.permissions import IsSRE, IsViewer
from diagnostics.domain import Refused, request_run
from diagnostics.models import HostRun
from diagnostics.serializers import HostRunSerializer, RunnerDiagnosticsSerializer
from diagnostics.summary import summarize
from runners.models import Runner

_ERRORS = {
    404: OpenApiResponse(description="No runner has this name."),
    409: OpenApiResponse(
        description="Another diagnostics or agent-install run is in flight on the "
        "runner (the message says who asked for it and when), or GitHub reports it "
        "offline. A canary in flight does not refuse: it is cancelled."
    ),
}


class RunnerDiagnosticsViewSet(viewsets.GenericViewSet[Runner]):
    """A runner's diagnostics reports, and the actions that run workflows on it."""

    queryset = Runner.objects.order_by("name", "pk")
    permission_classes = [IsViewer]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    filter_backends: list[Any] = []

    @extend_schema(responses={200: RunnerDiagnosticsSerializer, 404: _ERRORS[404]})
    def retrieve(self, request: Request, name: str) -> Response:
        """The run in flight, the latest report, what changed since the previous
        one, and the last runs (reports omitted there)."""
        runner = self.get_object()
        summary = summarize(runner, timezone.now())
        history = HostRunSerializer(summary.history, many=True).data
        for item in history:
            item.pop("report", None)
        return Response(
            {
                "runner": runner.name,
                "in_flight": _one(summary.in_flight),
                "latest": _one(summary.latest),
                "changes": summary.changes,
                "history": history,
                "offer_agent_install": summary.offer_agent,
            }
        )

    @extend_schema(request=None, responses={202: HostRunSerializer, **_ERRORS})
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def run(self, request: Request, name: str) -> Response:
        """Dispatch the diagnostics workflow pinned to this runner (audited). The
        host posts its report back; the run times out after DIAGNOSTICS_DEADLINE.
        A canary job in flight on the runner is cancelled for it."""
        return self._request(HostRun.Kind.DIAGNOSTICS, request)

    @extend_schema(request=None, responses={202: HostRunSerializer, **_ERRORS})
    @action(
        detail=True,
        methods=["post"],
        url_path="install-agent",
        permission_classes=[IsSRE],
    )
    def install_agent(self, request: Request, name: str) -> Response:
        """Dispatch the agent-install workflow pinned to this runner: installs or
        upgrades the heartbeat agent without SSH (audited). A canary job in flight
        on the runner is cancelled for it."""
        return self._request(HostRun.Kind.AGENT_INSTALL, request)

    def _request(self, kind: str, request: Request) -> Response:
        runner = self.get_object()
        if request.data:
            raise ValidationError({"detail": "send no body: the runner is in the URL"})
        try:
            requested = request_run(runner, kind, request.user)
        except Refused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(
            HostRunSerializer(requested.run).data, status=status.HTTP_202_ACCEPTED
        )


def _one(run: HostRun | None) -> dict[str, Any] | None:
    return None if run is None else dict(HostRunSerializer(run).data)


router = SimpleRouter(trailing_slash=True)
router.register("runner-diagnostics", RunnerDiagnosticsViewSet, basename="diagnostics")
