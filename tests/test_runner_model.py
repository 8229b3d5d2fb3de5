"""The Runner model: tokens, drain/undrain, eligibility, freshness and coverage, the
rule table, runbooks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.utils import timezone

from controlplane.models import AuditEvent
from runners.eligibility import judge
from runners.models import (
    Flag,
    Reason,
    Runner,
    RunnerEvent,
    State,
    evaluate_flags,
    runbook_for,
    token_digest,
)
from runners.states import RULES
from tests.factories import make_runner

pytestmark = pytest.mark.django_db


def blocking(runner: Runner) -> list[str]:
    """Why the strict fleet-wide rule keeps ``runner`` out of deploys."""
    return judge(runner, timezone.now()).blocking


def test_new_runner_is_unknown_never_seen_and_not_eligible() -> None:
    runner = make_runner()
    assert (runner.state, runner.reason) == (State.UNKNOWN, Reason.NEVER_SEEN)
    assert runner.reasons == [Reason.NEVER_SEEN]
    assert runner.runbook_slug == "monitoring-gap"
    assert blocking(runner) == ["unknown (never seen)"]


def test_issuing_a_token_stores_its_digest_and_logs_without_the_token(
    admin_user: User,
) -> None:
    runner = make_runner()
    token = runner.issue_heartbeat_token(admin_user)
    runner.refresh_from_db()
    assert runner.heartbeat_token_digest == token_digest(token)
    event = RunnerEvent.objects.get(runner=runner)
    assert event.kind == RunnerEvent.Kind.TOKEN_ROTATED
    assert event.actor == admin_user.username
    audit = AuditEvent.objects.get(action="runner.token_issue")
    assert audit.actor == admin_user
    assert token not in str(audit.detail) + event.message + audit.target_repr
    assert runner.issue_heartbeat_token(admin_user) != token


def test_drain_takes_a_healthy_runner_out_of_rotation(sre: User) -> None:
    runner = make_runner(state=State.HEALTHY, reason="")
    other = make_runner(name="linux-prod-2", state=State.HEALTHY, reason="")
    assert set(Runner.objects.eligible_for_deploy()) == {runner, other}
    runner.drain(sre, "  kernel upgrade  ")
    runner.refresh_from_db()
    assert runner.drained
    assert runner.drained_reason == "kernel upgrade"
    assert runner.drained_by == sre.username
    assert runner.drained_at is not None
    assert list(Runner.objects.eligible_for_deploy()) == [other]
    assert blocking(runner) == [f"drained by {sre.username}: kernel upgrade"]
    event = RunnerEvent.objects.get(runner=runner, kind=RunnerEvent.Kind.DRAINED)
    assert event.message == "kernel upgrade"
    audit = AuditEvent.objects.get(action="runner.drain")
    assert audit.detail == {"reason": "kernel upgrade"}
    assert audit.target_id == str(runner.pk)


def test_undrain_puts_it_back(sre: User) -> None:
    runner = make_runner(state=State.HEALTHY, reason="")
    runner.drain(sre, "maintenance")
    runner.undrain(sre)
    runner.refresh_from_db()
    assert not runner.drained
    assert runner.drained_reason == ""
    assert blocking(runner) == []
    assert list(Runner.objects.eligible_for_deploy()) == [runner]
    kinds = list(RunnerEvent.objects.values_list("kind", flat=True))
    assert sorted(kinds) == ["drained", "undrained"]
    assert AuditEvent.objects.filter(action="runner.undrain").count() == 1


def test_drain_needs_a_reason(sre: User) -> None:
    runner = make_runner()
    with pytest.raises(ValueError):
        runner.drain(sre, "   ")
    runner.refresh_from_db()
    assert not runner.drained
    assert not RunnerEvent.objects.exists()


def test_active_excludes_removed_runners() -> None:
    kept = make_runner()
    make_runner(name="gone", removed_at=timezone.now(), state=State.HEALTHY)
    assert list(Runner.objects.active()) == [kept]
    assert not Runner.objects.eligible_for_deploy().exists()


def test_every_reason_has_a_runbook_and_every_rule_a_known_state() -> None:
    for reason in Reason:
        if reason != Reason.NONE:
            assert runbook_for(reason), reason
    assert runbook_for("") == ""
    assert runbook_for(Reason.SIGNALS_DISAGREE) == "github-offline-heartbeat-ok"
    assert runbook_for(Reason.REMOVED_FROM_GITHUB) == "runner-removed"
    assert runbook_for(Reason.DISK_LOW) == "runner-degraded"
    assert {rule.state for rule in RULES} == set(State)


@pytest.mark.parametrize(
    ("flags", "state", "reasons"),
    [
        (Flag.HEARTBEAT_FRESH | Flag.GITHUB_ONLINE, State.HEALTHY, []),
        (Flag.HEARTBEAT_STALE | Flag.GITHUB_OFFLINE, State.UNHEALTHY,
         ["heartbeat_stale", "github_offline"]),
        (Flag.HEARTBEAT_FRESH | Flag.DISK_LOW | Flag.LOAD_HIGH, State.DEGRADED,
         ["disk_low", "load_high"]),
        (Flag.REMOVED | Flag.HEARTBEAT_STALE, State.UNHEALTHY,
         ["removed_from_github", "heartbeat_stale"]),
        (Flag.GITHUB_ONLINE, State.UNKNOWN, ["github_only"]),
        (Flag(0), State.UNKNOWN, ["no_signal"]),
    ],
)  # fmt: skip
def test_rule_table(flags: Flag, state: State, reasons: list[str]) -> None:
    assert evaluate_flags(flags) == (state, reasons)


def test_event_runbook_follows_its_primary_reason() -> None:
    runner = make_runner()
    event = RunnerEvent.objects.create(
        runner=runner,
        kind=RunnerEvent.Kind.STATE_CHANGE,
        from_state=State.HEALTHY,
        to_state=State.UNHEALTHY,
        reasons=["heartbeat_stale", "signals_disagree"],
    )
    assert event.reason == "heartbeat_stale"
    assert event.runbook_slug == "runner-heartbeat-stale"
    assert event.as_dict()["runbook"] == "runner-heartbeat-stale"


def test_freshness_filters_and_predicates_agree_at_each_limit(settings: Any) -> None:
    settings.GITHUB_STATUS_STALE_AFTER = 900
    settings.EXPORTER_STALE_AFTER = 180
    now = timezone.now()

    def ago(seconds: int) -> datetime:
        return now - timedelta(seconds=seconds)

    make_runner(
        name="inside",
        github_seen_at=ago(899),
        heartbeat_deadline=ago(-1),
        # A probe that failed is still a fresh observation.
        exporter_checked_at=ago(179),
        exporter_ok=False,
    )
    make_runner(
        name="at-limit",
        github_seen_at=ago(900),
        heartbeat_deadline=now,
        exporter_checked_at=ago(180),
        exporter_ok=True,
    )
    make_runner(name="never")
    # Freshness says nothing about removal: chain active() for that.
    make_runner(
        name="removed",
        removed_at=now,
        github_seen_at=now,
        heartbeat_deadline=ago(-10),
        exporter_checked_at=now,
    )
    runners = list(Runner.objects.all())

    for queryset, predicate in [
        (Runner.objects.github_fresh(now), Runner.github_is_fresh),
        (Runner.objects.heartbeat_fresh(now), Runner.heartbeat_is_fresh),
        (Runner.objects.exporter_fresh(now), Runner.exporter_is_fresh),
    ]:
        names = {runner.name for runner in queryset}
        assert names == {"inside", "removed"}
        assert names == {runner.name for runner in runners if predicate(runner, now)}
    assert {runner.name for runner in Runner.objects.heartbeat_stale(now)} == {
        "at-limit"
    }


def test_coverage_counts_the_signals_reporting_for_active_runners() -> None:
    now = timezone.now()
    make_runner(
        name="everything",
        # Offline is still a report: GitHub listed the runner.
        github_status="offline",
        github_seen_at=now,
        heartbeat_deadline=now + timedelta(seconds=10),
        exporter_checked_at=now,
        exporter_ok=True,
    )
    make_runner(
        name="exporter-down",
        github_seen_at=now - timedelta(hours=2),
        heartbeat_deadline=now - timedelta(seconds=1),
        exporter_checked_at=now,
        exporter_ok=False,
    )
    make_runner(name="never", drained=True)
    make_runner(
        name="removed",
        removed_at=now,
        github_seen_at=now,
        heartbeat_deadline=now + timedelta(seconds=10),
        exporter_checked_at=now,
        exporter_ok=True,
    )

    counts = Runner.objects.coverage(now, drained=Count("pk", filter=Q(drained=True)))

    assert counts == {
        "active": 3,
        "github": 1,
        "heartbeat": 1,
        "exporter": 1,
        "drained": 1,
    }
