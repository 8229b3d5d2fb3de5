"""An SRE's diagnostics run or agent install takes the runner from a canary in flight,
through the GitHub simulator: the canary is cancelled (its GitHub run too, even when
its dispatch was still on the wire), counts neither as a pass nor as a failure,
shows grey on the strip, and the runner gets its canary once the SRE's run ended;
the SRE's job is dispatched at once and taken by the runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

import diagnostics.tasks  # noqa: F401 # registers the tasks the requests send
from controlplane.celery import app
from controlplane.github import gateway_for
from controlplane.models import AuditEvent, GitHubPurposeUsage
from deploys.models import WorkflowJob
from diagnostics import canary, conf
from diagnostics.domain import request_run
from diagnostics.models import HostRun
from githubsim import Simulator
from runners.models import State
from tests.canaryfleet import CANCEL, NAMES, Fleet, canary_of, configure
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.django_db,
    # The simulator's clock moves only when a test moves it.
    pytest.mark.sim(time_scale=1e-9, pickup_delay=5, connect=True, max_retries=1),
]
FOLDER = ROOT / "diagnostics/workflows"
PRIMARY = NAMES[0]

Sent = list[tuple[str, tuple[Any, ...]]]


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    configure(settings)


@pytest.fixture
def fleet(sim: Simulator) -> Iterator[Fleet]:
    fleet = Fleet(sim)
    for name in ("runner-diagnostics.yml", "runner-agent.yml"):
        flow = fleet.sim.set_workflow(name, yaml=(FOLDER / name).read_text())
        flow.jobs[0].duration = 10
    yield fleet
    fleet.close()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """The tasks the requests hand the broker after commit, to run here in order."""
    messages: Sent = []

    def send_task(name: str, args: tuple[Any, ...] = (), **_: Any) -> None:
        messages.append((name, tuple(args)))

    monkeypatch.setattr(app, "send_task", send_task)
    return messages


def run_sent(sent: Sent) -> list[str]:
    names = [name for name, _ in sent]
    for name, args in sent:
        app.tasks[name](*args)
    sent.clear()
    return names


def github_conclusion(fleet: Fleet, run: HostRun) -> str | None:
    assert run.github_run_id is not None
    state = fleet.sim.state
    return state.get_run(state.default_repository, run.github_run_id).conclusion


def job_of(run: HostRun) -> WorkflowJob:
    run.refresh_from_db()
    assert run.github_run_id is not None
    return WorkflowJob.objects.get(run_id=run.github_run_id)


def test_an_sres_diagnostics_run_cancels_the_canary_and_the_runner_takes_it_now(
    fleet: Fleet,
    sre_client: Client,
    sent: Sent,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    canary.schedule_due(fleet.now)
    fleet.step(6)  # the primary took its canary, a 10 s job
    running = canary_of(PRIMARY)
    assert running.started_at is not None and running.finished_at is None

    with django_capture_on_commit_callbacks(execute=True):
        answer = sre_client.post(f"/api/v1/runner-diagnostics/{PRIMARY}/run/")

    assert answer.status_code == 202, answer.content
    assert answer.json()["kind"] == "diagnostics"
    cancelled = canary_of(PRIMARY)
    assert cancelled.state == HostRun.State.CANCELLED
    assert "for the diagnostics sam-sre asked for on prod-1" in cancelled.detail
    assert "neither for nor against the runner" in cancelled.detail
    event = AuditEvent.objects.get(action="runner.diagnostics_requested")
    assert event.detail == {
        "token": answer.json()["token"],
        "cancelled_canary": cancelled.token,
    }
    assert run_sent(sent) == [
        "diagnostics.tasks.dispatch_host_run",
        "diagnostics.tasks.cancel_host_run",
    ]
    # The canary's GitHub run is cancelled, counted as the canary's call.
    assert fleet.requests(CANCEL) == 1
    usage = {
        row["purpose"]: row["charged"] for row in GitHubPurposeUsage.objects.shares()
    }
    assert usage["canary"] == 3  # two dispatches and the cancel

    fleet.step(6)
    assert github_conclusion(fleet, cancelled) == "cancelled"
    diagnostics = HostRun.objects.get(token=answer.json()["token"])
    job = job_of(diagnostics)
    assert (job.status, job.runner_name) == (WorkflowJob.Status.IN_PROGRESS, PRIMARY)

    # Neither a pass nor a failure: the runner's canary verdict is as it was.
    fleet.sweep(2)
    runner = fleet.runner()
    assert (runner.canary_failing, runner.canary_checked_at) == (False, None)
    assert runner.state == State.HEALTHY
    assert canary_of(NAMES[1]).state != HostRun.State.CANCELLED

    # Its turn comes again once the SRE's run has ended; not the other runner's.
    fleet.run_for(10)  # the diagnostics job ends: the runner is idle again
    HostRun.objects.filter(pk=diagnostics.pk).update(
        state=HostRun.State.SUCCEEDED, finished_at=fleet.now
    )
    again = canary.schedule_due(fleet.now)
    assert [run.runner.name for run in again] == [PRIMARY]


def test_an_agent_install_from_the_page_cancels_a_canary_not_yet_picked_up(
    fleet: Fleet,
    sre_client: Client,
    sent: Sent,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    canary.schedule_due(fleet.now)
    waiting = canary_of(PRIMARY)
    assert waiting.github_run_id is not None and waiting.started_at is None

    with django_capture_on_commit_callbacks(execute=True):
        answer = sre_client.post(
            f"/fleet/{PRIMARY}/diagnostics/install-agent/", follow=True
        )

    page = answer.content.decode()
    assert (
        "agent install dispatched on prod-1 (the canary job in flight there was "
        "cancelled for it)" in page
    )
    assert 'class="canary-cancelled"' in page
    assert "cancelled for an SRE's run" in page
    run_sent(sent)
    fleet.step(6)

    # The canary's job never ran: the agent install's did, on the runner.
    assert github_conclusion(fleet, waiting) == "cancelled"
    assert not job_of(waiting).runner_name
    install = HostRun.objects.get(kind=HostRun.Kind.AGENT_INSTALL)
    job = job_of(install)
    assert (job.status, job.runner_name) == (WorkflowJob.Status.IN_PROGRESS, PRIMARY)
    assert canary_of(PRIMARY).state == HostRun.State.CANCELLED
    metrics = sre_client.get("/metrics").content.decode()
    assert (
        'controlplane_diagnostics_runs{kind="canary",outcome="cancelled"} 1.0'
        in metrics
    )


def test_a_canary_whose_dispatch_was_on_the_wire_is_cancelled_when_github_answers(
    fleet: Fleet,
    sre: User,
    sent: Sent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = gateway_for(conf.repository())
    dispatch = gateway.dispatch_workflow

    def sre_asks_meanwhile(workflow: str, ref: str, inputs: dict[str, str]) -> Any:
        result = dispatch(workflow, ref, inputs)
        if workflow == "runner-canary.yml" and inputs["runner"] == PRIMARY:
            # GitHub made the run; its answer has not been recorded yet.
            request_run(fleet.runner(), HostRun.Kind.DIAGNOSTICS, sre)
            # The cancel task finds no run id to cancel yet.
            for name, args in sent:
                if name == "diagnostics.tasks.cancel_host_run":
                    app.tasks[name](*args)
            assert fleet.requests(CANCEL) == 0
        return result

    monkeypatch.setattr(gateway, "dispatch_workflow", sre_asks_meanwhile)

    canary.schedule_due(fleet.now)
    fleet.step(1)

    cancelled = canary_of(PRIMARY)
    assert cancelled.state == HostRun.State.CANCELLED
    assert cancelled.github_run_id is not None
    assert fleet.requests(CANCEL) == 1
    assert github_conclusion(fleet, cancelled) == "cancelled"
    assert canary_of(NAMES[1]).state == HostRun.State.RUNNING
