"""API representations of runners, their health samples and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.runbooks import runbook_url
from controlplane.serializers import JSONTypesMixin, OptionalURLField
from runners import placement
from runners.eligibility import trust_text
from runners.models import HealthSample, Runner, RunnerEvent
from runners.states import Reason, State, runbook_for


def runbook_path(reason: str) -> str | None:
    return runbook_url(runbook_for(reason)) or None


class PoolPlaceSerializer(serializers.Serializer[Any]):
    """The runner's place in one environment's deploy pool."""

    environment = serializers.CharField(source="environment.name")
    position = serializers.IntegerField(
        help_text="0: the primary; 1 and up: pre-approved secondaries, in order."
    )


class PoolEligibilitySerializer(serializers.Serializer[Any]):
    """The runner judged for one environment whose pool holds it."""

    environment = serializers.CharField()
    position = serializers.IntegerField(
        help_text="0: the primary; 1 and up: pre-approved secondaries, in order."
    )
    signal_policy = serializers.CharField(
        help_text="The environment's signal policy in words."
    )
    eligible = serializers.BooleanField(source="verdict.eligible")
    reasons = serializers.ListField(
        source="verdict.blocking",
        child=serializers.CharField(),
        help_text="Why a deploy to this environment may not go to the runner now.",
    )
    notes = serializers.ListField(
        source="verdict.notes",
        child=serializers.CharField(),
        help_text="What is wrong but does not keep it out: advisory signals under "
        "this environment's policy, a trust override at work.",
    )
    trusted = serializers.BooleanField(
        source="verdict.trusted",
        help_text="A trust override in force counts for this verdict.",
    )


class RunnerSerializer(serializers.ModelSerializer[Runner]):
    """A runner with its signals, health, drain flag and deploy eligibility.

    Read-only: the sync, the heartbeat and the sweep write these fields; people
    change a runner through the drain, undrain and rotate-token actions."""

    reasons = serializers.SerializerMethodField(
        help_text="Every reason code the latest observation found, primary first."
    )
    runbook = serializers.SerializerMethodField(
        help_text="Path of the runbook for the current reason, null when none."
    )
    eligible = serializers.SerializerMethodField(
        help_text="Whether deploys may go to this runner now: to every environment "
        "whose pool holds it, each under its signal policy and the trust override "
        "(see eligibility); for a runner in no pool, under the strict fleet-wide "
        "rule."
    )
    ineligibility_reasons = serializers.SerializerMethodField(
        help_text="Why not, in words; for a pool runner each starts with its "
        'environment ("production: degraded (exporter unreachable)").'
    )
    eligibility = serializers.SerializerMethodField(
        help_text="The verdict for each environment whose pool holds the runner, "
        "by environment name; empty for a runner in no pool."
    )
    heartbeat_fresh = serializers.SerializerMethodField(
        help_text="The last heartbeat is within HEARTBEAT_STALE_AFTER."
    )
    github_fresh = serializers.SerializerMethodField(
        help_text="GitHub's status was read within GITHUB_STATUS_STALE_AFTER."
    )
    removed = serializers.SerializerMethodField(
        help_text="GitHub no longer lists this runner (it is kept with its history)."
    )
    reason = serializers.ChoiceField(
        choices=Reason.choices, read_only=True, help_text="Primary reason code."
    )
    environments = PoolPlaceSerializer(
        source="pool_entries",
        many=True,
        read_only=True,
        help_text="The deploy environments whose runner pool holds this runner.",
    )

    trusted = serializers.SerializerMethodField(
        help_text='The trust override in force ("trusted by NAME until TIME: '
        'reason"); null when none (trusted_until may still show one that ended).'
    )

    exporter_url = OptionalURLField(
        help_text="The host's Prometheus exporter; null when not probed."
    )

    class Meta:
        model = Runner
        fields = [
            "id",
            "name",
            "github_id",
            "labels",
            "os",
            "host",
            "github_status",
            "github_busy",
            "github_seen_at",
            "github_fresh",
            "removed",
            "removed_at",
            "last_heartbeat_at",
            "heartbeat_fresh",
            "facts",
            "exporter_url",
            "exporter_ok",
            "exporter_checked_at",
            "exporter_detail",
            "state",
            "reason",
            "reasons",
            "runbook",
            "state_since",
            "environments",
            "drained",
            "drained_reason",
            "drained_by",
            "drained_at",
            "trusted",
            "trusted_until",
            "trusted_by",
            "trusted_reason",
            "eligible",
            "ineligibility_reasons",
            "eligibility",
            "first_seen_at",
            "runner_version",
            "runner_version_source",
            "version_outdated",
            "version_note",
            "missing_name_label",
        ]
        read_only_fields = fields

    @extend_schema_field(
        serializers.ListField(child=serializers.ChoiceField(choices=Reason.choices))
    )
    def get_reasons(self, runner: Runner) -> list[str]:
        return [str(reason) for reason in runner.reasons]

    def get_runbook(self, runner: Runner) -> str | None:
        return runbook_path(runner.reason)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_trusted(self, runner: Runner) -> str | None:
        return trust_text(runner) if runner.trusted_at_now(timezone.now()) else None

    def get_eligible(self, runner: Runner) -> bool:
        return self._eligibility(runner).eligible

    def get_ineligibility_reasons(self, runner: Runner) -> list[str]:
        return self._eligibility(runner).reasons

    @extend_schema_field(PoolEligibilitySerializer(many=True))
    def get_eligibility(self, runner: Runner) -> list[dict[str, Any]]:
        pools = self._eligibility(runner).pools
        return list(PoolEligibilitySerializer(pools, many=True).data)

    def _eligibility(self, runner: Runner) -> placement.Eligibility:
        # Three fields read it: judged once per runner, at the serializer's "now".
        cached = self._judged.get(runner.pk)
        if cached is None:
            cached = placement.eligibility(runner, self._now())
            self._judged = {runner.pk: cached}
        return cached

    def get_heartbeat_fresh(self, runner: Runner) -> bool:
        return runner.heartbeat_is_fresh(self._now())

    def get_github_fresh(self, runner: Runner) -> bool:
        return runner.github_is_fresh(self._now())

    def get_removed(self, runner: Runner) -> bool:
        return runner.removed_at is not None

    def _now(self) -> datetime:
        # One "now" per serializer (a list shares its child), so every runner on a
        # page is judged at the same instant.
        if self._now_cache is None:
            self._now_cache = timezone.now()
        return self._now_cache

    _now_cache: datetime | None = None
    # The last runner judged (replaced, never mutated: safe as a class default).
    _judged: dict[int, placement.Eligibility] = {}


class DrainSerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(
        max_length=500,
        help_text="Why the runner leaves deploy rotation (kept in the audit log).",
    )


class TrustSerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(
        max_length=500,
        help_text="Why deploys may go to the runner whatever its health (shown on "
        "every page that shows it, kept in the audit log).",
    )
    hours = serializers.FloatField(
        min_value=1 / 60,
        max_value=24,
        help_text="How long the override lasts: 1 minute (1/60) to 24 hours. It "
        "ends by itself.",
    )


class TokenSerializer(serializers.Serializer[dict[str, Any]]):
    """A new heartbeat token: shown this once, stored only as a digest."""

    name = serializers.CharField(help_text="The runner's name.")
    token = serializers.CharField(
        help_text="Send as `Authorization: Bearer <token>` to /heartbeat. The "
        "previous token stopped working."
    )


class HealthSampleSerializer(serializers.ModelSerializer[HealthSample]):
    class Meta:
        model = HealthSample
        fields = ["id", "source", "ok", "observed_at", "latency_ms", "detail"]
        read_only_fields = fields


class RunnerEventSerializer(serializers.ModelSerializer[RunnerEvent]):
    from_state = serializers.ChoiceField(
        choices=[("", "none"), *State.choices], read_only=True
    )
    to_state = serializers.ChoiceField(
        choices=[("", "none"), *State.choices], read_only=True
    )
    runbook = serializers.SerializerMethodField(
        help_text="Path of the runbook for the event's primary reason, null when none."
    )

    class Meta:
        model = RunnerEvent
        fields = [
            "id",
            "kind",
            "from_state",
            "to_state",
            "reasons",
            "runbook",
            "message",
            "actor",
            "created_at",
        ]
        read_only_fields = fields

    def get_runbook(self, event: RunnerEvent) -> str | None:
        return runbook_path(event.reason)
