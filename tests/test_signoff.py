"""Approvals in the control plane (``deploys.signoff``) through the deploy engine and
the GitHub simulator: a deploy needing them waits at the gate, undispatched and off
the runner clock, until SREs other than the requester approve; approvals expire;
a rejection ends it; break-glass skips them; a freeze that begins meanwhile fails it.

Time as in ``test_deploy_engine``: the simulator runs 600 times faster than real
time; the control plane's "now" is a ``Clock`` a test moves forward.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane import notifications
from controlplane.models import AuditEvent, Notification
from deploys import engine, signoff
from deploys.models import DeployEvent, DeployRun, Environment, FreezeWindow, SignOff
from deploys.request_errors import BreakGlassForbidden
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import Runner, State
from tests.conftest import make_user
from tests.deploying import DISPATCH, Clock, drive, final, kinds, simulated_env

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=11,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]

Kind = DeployEvent.Kind


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def carol(db: None) -> User:
    return make_user("carol-sre", "sre")


@pytest.fixture
def dan(db: None) -> User:
    return make_user("dan-sre", "sre")


def awaiting(run: DeployRun) -> bool:
    last = run.events.order_by("-created_at", "-pk").first()
    return last is not None and "signoff" in (last.detail or {})


def test_a_deploy_needing_approvals_waits_at_the_gate_undispatched(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, signoffs_required=2)
    run = request_deploy(sre, env, "main").run

    run = drive(run, awaiting, clock)
    clock.jump(3600)
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()

    assert run.state == DeployRun.State.GATING
    assert run.attempts.count() == 0
    assert sim.state.request_count(DISPATCH) == 0
    waiting = run.events.get(kind=Kind.GATE_WAITING)
    assert waiting.message == (
        "awaiting approvals in the control plane: 0 of 2, from any SRE but sam-sre"
    )
    judged = signoff.verdict(run, clock())
    assert not judged.satisfied
    assert judged.missing == 2
    assert judged.awaited_from == "any SRE but sam-sre"
    # Waiting an hour for people is not waiting for a runner: no gate timeout.
    assert run.reason == ""


def test_the_requester_and_non_sres_cannot_approve(
    sim: Simulator, clock: Clock, sre: User, viewer: User, admin_user: User
) -> None:
    env = simulated_env(sim, signoffs_required=1)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)

    with pytest.raises(signoff.SignOffRefused) as own:
        signoff.approve(run, sre, "looks fine", now=clock())
    with pytest.raises(signoff.SignOffRefused) as viewing:
        signoff.approve(run, viewer, now=clock())

    assert own.value.status == 403
    assert own.value.code == "requester"
    assert "another SRE must approve it (two-person rule)" in own.value.message
    assert viewing.value.status == 403
    assert "need the SRE role" in viewing.value.message
    assert SignOff.objects.count() == 0
    denied = AuditEvent.objects.filter(
        action="deploy.signoff_approve", outcome=AuditEvent.Outcome.DENIED
    )
    assert sorted(denied.values_list("actor_name", flat=True)) == [
        "sam-sre",
        "val-viewer",
    ]
    # An admin is an SRE too, and may approve someone else's deploy.
    assert signoff.approve(run, admin_user, now=clock()).satisfied


def test_two_other_sres_approve_and_the_deploy_goes_on(
    sim: Simulator, clock: Clock, sre: User, carol: User, dan: User
) -> None:
    env = simulated_env(sim, signoffs_required=2)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)

    first = signoff.approve(run, carol, "diff reviewed", now=clock())
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert not first.satisfied
    assert run.state == DeployRun.State.GATING
    assert run.events.filter(kind=Kind.GATE_WAITING).last().message == (  # type: ignore[union-attr]
        "awaiting approvals in the control plane: 1 of 2 (carol-sre), from any SRE "
        "but sam-sre"
    )
    with pytest.raises(signoff.SignOffRefused) as again:
        signoff.approve(run, carol, now=clock())
    assert again.value.code == "already_approved"

    second = signoff.approve(run, dan, now=clock())
    run = drive(run, final, clock)

    assert second.satisfied
    assert second.why == "approved by carol-sre, dan-sre"
    assert run.state == DeployRun.State.SUCCEEDED
    assert kinds(run)[:7] == [
        "requested",
        "gating",
        "gate_waiting",
        "signoff_approved",
        "gate_waiting",
        "signoff_approved",
        "signed_off",
    ]
    assert run.events.get(kind=Kind.SIGNED_OFF).detail == {
        "approvals": ["carol-sre", "dan-sre"]
    }
    assert sim.state.request_count(DISPATCH) == 1
    assert list(
        AuditEvent.objects.filter(action="deploy.signoff_approve", outcome="success")
        .order_by("pk")
        .values_list("actor_name", "detail")
    ) == [
        ("carol-sre", {"environment": "production", "reason": "diff reviewed"}),
        ("dan-sre", {"environment": "production", "reason": ""}),
    ]
    # Dispatched: the approvals count for good, even once they would have expired.
    clock.jump(env.signoff_ttl + 1)
    assert signoff.verdict(run, clock()).satisfied
    with pytest.raises(signoff.SignOffRefused) as late:
        signoff.approve(run, make_user("erin-sre", "sre"), now=clock())
    assert late.value.code == "finished"


def test_the_gate_timeout_counts_from_the_approval_not_the_request(
    sim: Simulator, clock: Clock, sre: User, carol: User
) -> None:
    env = simulated_env(sim, signoffs_required=1, gate_timeout=60)
    Runner.objects.update(state=State.UNHEALTHY)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)
    clock.jump(600)

    signoff.approve(run, carol, now=clock())
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.GATING
    assert run.events.order_by("pk").last().kind == Kind.GATE_WAITING  # type: ignore[union-attr]
    clock.jump(30)
    Runner.objects.update(state=State.HEALTHY)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED


def test_an_approval_that_expires_before_the_dispatch_no_longer_counts(
    sim: Simulator, clock: Clock, sre: User, carol: User
) -> None:
    env = simulated_env(sim, signoffs_required=1, signoff_ttl=600)
    run = request_deploy(sre, env, "main").run
    Environment.objects.filter(pk=env.pk).update(paused=True)
    # Approved while it waits in the queue (the environment is paused).
    given = signoff.approve(run, carol, "ok", now=clock())
    assert given.satisfied
    assert given.approvals[0].expires_at == given.approvals[0].at + timedelta(
        seconds=600
    )
    assert signoff.verdict(run, clock() + timedelta(seconds=599)).satisfied
    clock.jump(600)
    Environment.objects.filter(pk=env.pk).update(paused=False)

    run = drive(run, awaiting, clock)
    assert run.state == DeployRun.State.GATING
    assert run.attempts.count() == 0
    waiting = run.events.get(kind=Kind.GATE_WAITING)
    assert waiting.message.endswith("; expired: carol-sre")
    assert [a["by"] for a in waiting.detail["signoff"]["expired"]] == ["carol-sre"]

    # The same SRE approves again: the approval is renewed, not counted twice.
    signoff.approve(run, carol, "still ok", now=clock())
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    assert SignOff.objects.get().reason == "still ok"


def test_a_rejection_ends_the_deploy_with_reason_rejected(
    sim: Simulator, clock: Clock, sre: User, carol: User, dan: User
) -> None:
    env = simulated_env(sim, signoffs_required=2)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)
    signoff.approve(run, dan, now=clock())

    with pytest.raises(signoff.SignOffRefused) as bare:
        signoff.reject(run, carol, "  ", now=clock())
    judged = signoff.reject(run, carol, "the migration is not reviewed", now=clock())
    run = drive(run, final, clock)

    assert bare.value.status == 400
    assert bare.value.field == "reason"
    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.REJECTED
    assert run.runbook_slug == "deploy-rejected"
    assert run.message == (
        "rejected by carol-sre in the control plane: the migration is not reviewed"
    )
    assert judged.rejected_by == "carol-sre"
    assert not judged.satisfied
    assert judged.awaited_from == ""
    assert sim.state.request_count(DISPATCH) == 0
    assert AuditEvent.objects.get(
        action="deploy.signoff_reject", outcome="success"
    ).detail == {
        "environment": "production",
        "reason": "the migration is not reviewed",
    }
    with pytest.raises(signoff.SignOffRefused) as after:
        signoff.approve(run, make_user("erin-sre", "sre"), now=clock())
    assert after.value.code == "finished"
    assert "already failed" in after.value.message


def test_an_admin_breaking_glass_skips_the_approvals_flagged_everywhere(
    sim: Simulator, clock: Clock, admin_user: User, sre: User, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    settings.NOTIFY_SCAN_GRACE = 0.0
    env = simulated_env(sim, signoffs_required=2)
    with pytest.raises(BreakGlassForbidden):
        request_deploy(sre, env, "main", break_glass_reason="in a hurry")

    run = request_deploy(admin_user, env, "main", break_glass_reason="CVE fix").run
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    glass = run.events.get(kind=Kind.BREAK_GLASS)
    assert glass.message == (
        "approvals in the control plane skipped by ada-admin: CVE fix"
    )
    assert glass.detail == {
        "signoffs_skipped": 2,
        "by": "ada-admin",
        "reason": "CVE fix",
    }
    judged = signoff.verdict(run, clock())
    assert judged.satisfied
    assert judged.break_glass == "ada-admin: CVE fix"
    assert AuditEvent.objects.get(action="deploy.break_glass").detail == {
        "reason": "CVE fix",
        "signoffs_skipped": 2,
    }
    with pytest.raises(signoff.SignOffRefused) as moot:
        signoff.approve(DeployRun.objects.get(pk=run.pk), sre, now=clock())
    assert moot.value.code in ("finished", "break_glass")
    notifications.scan_events(clock() + timedelta(seconds=1))
    sent = Notification.objects.get(kind=notifications.Kind.DEPLOY_BREAK_GLASS)
    assert sent.subject == f"Break-glass: deploy #{run.pk} of main to production"
    assert sent.fields["break_glass"] is True
    assert sent.link.endswith(f"/deploys/{run.pk}/")


def test_an_admin_breaks_glass_on_a_deploy_awaiting_approvals(
    sim: Simulator, clock: Clock, admin_user: User, sre: User, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    settings.NOTIFY_SCAN_GRACE = 0.0
    env = simulated_env(sim, signoffs_required=2)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)
    with pytest.raises(signoff.SignOffRefused) as not_admin:
        signoff.break_glass(run, make_user("erin-sre", "sre"), "urgent", now=clock())
    with pytest.raises(signoff.SignOffRefused) as no_reason:
        signoff.break_glass(run, admin_user, " ", now=clock())

    judged = signoff.break_glass(run, admin_user, "outage fix", now=clock())
    run = drive(run, final, clock)

    assert (not_admin.value.status, no_reason.value.status) == (403, 400)
    assert judged.satisfied
    assert judged.break_glass == "ada-admin: outage fix"
    assert run.state == DeployRun.State.SUCCEEDED
    assert run.events.get(kind=Kind.BREAK_GLASS).message == (
        "approvals in the control plane skipped by ada-admin: outage fix"
    )
    assert list(
        AuditEvent.objects.filter(action="deploy.break_glass")
        .order_by("pk")
        .values_list("actor_name", "outcome")
    ) == [("erin-sre", "denied"), ("ada-admin", "denied"), ("ada-admin", "success")]
    notifications.scan_events(clock() + timedelta(seconds=1))
    sent = Notification.objects.get(kind=notifications.Kind.DEPLOY_BREAK_GLASS)
    assert sent.fields["by"] == "ada-admin"


def test_break_glass_on_approvals_alone_does_not_pass_a_later_freeze(
    sim: Simulator, clock: Clock, admin_user: User
) -> None:
    env = simulated_env(sim, signoffs_required=1)
    Runner.objects.update(state=State.UNHEALTHY)
    run = request_deploy(admin_user, env, "main", break_glass_reason="urgent").run
    engine.advance(run.pk, now=clock())
    FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="year-end freeze",
        starts_at=clock(),
        ends_at=clock() + timedelta(hours=1),
    )

    run = drive(run, final, clock)

    assert run.reason == DeployRun.Reason.FROZEN


def test_a_deploy_awaiting_approvals_fails_when_a_freeze_begins(
    sim: Simulator, clock: Clock, sre: User, carol: User, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    settings.NOTIFY_SCAN_GRACE = 0.0
    env = simulated_env(sim, signoffs_required=1)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)
    FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="year-end freeze",
        starts_at=clock(),
        ends_at=clock() + timedelta(hours=1),
    )

    # The gate looks again on its own (no approval wakes it).
    run.refresh_from_db()
    assert run.next_check_at is not None
    assert run.next_check_at <= clock() + timedelta(seconds=60)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.FROZEN
    assert sim.state.request_count(DISPATCH) == 0
    with pytest.raises(signoff.SignOffRefused) as late:
        signoff.approve(run, carol, now=clock())
    assert late.value.code == "finished"
    assert "(the environment froze before the deploy started)" in late.value.message
    notifications.scan_events(clock() + timedelta(seconds=1))
    assert sorted(Notification.objects.values_list("kind", flat=True)) == [
        notifications.Kind.DEPLOY_FAILED,
        notifications.Kind.DEPLOY_SIGNOFF_AWAITED,
    ]


def test_the_notification_links_to_the_approval_page(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    settings.NOTIFY_SCAN_GRACE = 0.0
    settings.SITE_URL = "https://cp.example"
    env = simulated_env(sim, signoffs_required=1)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)
    engine.advance(run.pk, now=clock())

    notifications.scan_events(clock() + timedelta(seconds=1))

    [sent] = Notification.objects.all()
    assert sent.kind == notifications.Kind.DEPLOY_SIGNOFF_AWAITED
    assert sent.subject == f"Deploy #{run.pk} of main to production awaits approval"
    assert sent.link == f"https://cp.example/deploys/{run.pk}/signoff/"
    assert sent.fields["awaited_from"] == "any SRE but sam-sre"
    assert sent.fields["approvals"] == "0 of 1"
    assert "Approve or reject it from the link" in sent.message
    body = notifications.slack_body(sent)
    assert f"<https://cp.example/deploys/{run.pk}/signoff/|Open>" in str(body)


def test_environments_without_approvals_are_untouched(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim)
    run = drive(request_deploy(sre, env, "main").run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    assert Kind.SIGNED_OFF not in kinds(run)
    assert signoff.verdict(run, clock()).why == (
        "no approval in the control plane required"
    )
    with pytest.raises(signoff.SignOffRefused) as needless:
        signoff.approve(run, make_user("erin-sre", "sre"), now=clock())
    assert needless.value.code == "finished"


def test_lists_say_a_held_deploy_awaits_approval_until_it_is_approved(
    sim: Simulator, clock: Clock, sre: User, carol: User, viewer_client: Any
) -> None:
    env = simulated_env(sim, signoffs_required=1)
    run = drive(request_deploy(sre, env, "main").run, awaiting, clock)
    pages = ("/", f"/deploys/environments/{env.name}/", "/deploys/")

    def badges() -> list[str]:
        return [
            " ".join(viewer_client.get(url).content.decode().split()) for url in pages
        ]

    for html in badges():
        assert "badge-gating" in html
        assert ">awaiting approval</span>" in html

    signoff.approve(run, carol, now=clock())
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert (
        run.state != DeployRun.State.GATING
        or run.events.filter(kind=Kind.SIGNED_OFF).exists()
    )
    for html in badges():
        assert ">awaiting approval</span>" not in html
