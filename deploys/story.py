"""What a deploy's page says first: a headline telling what happened (or what it
waits for and until when), the state as people read it, how long it waited and
where, and a timeline drawn per attempt as SVG rendered on the server.

Everything here is computed from the run, its attempts and its events as loaded
by the page (no query of its own), and the timeouts recorded on the run when it
was requested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controlplane import runbooks
from deploys.models import DeployAttempt, DeployEvent, DeployRun

Kind = DeployEvent.Kind
Run = DeployRun.State

# The SVG's coordinate system: labels on the left, the time axis on the right.
WIDTH = 1000
LABEL_WIDTH = 170
AXIS_END = WIDTH - 10
LANE_HEIGHT = 28
BAR_HEIGHT = 14
TOP = 8
AXIS_HEIGHT = 22


def seconds(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds()))


def hms(when: datetime | None) -> str:
    return when.strftime("%H:%M:%S") if when is not None else "–"


@dataclass(frozen=True)
class RunbookLink:
    url: str
    title: str


def runbook_link(slug: str) -> RunbookLink | None:
    """The runbook page for ``slug`` with its title; None when there is none."""
    page = runbooks.get(slug) if slug else None
    if page is None:
        return None
    return RunbookLink(page.url, page.title)


@dataclass(frozen=True)
class Countdown:
    """When a waiting deploy fails unless something changes."""

    deadline: datetime
    left: int
    timeout: int
    what: str  # "fails", "fails over"
    unless: str  # "a runner recovers"


@dataclass(frozen=True)
class Headline:
    text: str
    tone: str  # succeeded, failed, warning, info
    countdown: Countdown | None = None


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    css: str
    title: str


@dataclass(frozen=True)
class Mark:
    x: float
    title: str


@dataclass
class Lane:
    label: str
    y: int
    segments: list[Segment] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def bar_y(self) -> int:
        return self.y + (LANE_HEIGHT - BAR_HEIGHT) // 2

    @property
    def text_y(self) -> int:
        return self.y + LANE_HEIGHT // 2 + 4

    @property
    def mark_top(self) -> int:
        return self.y + 1

    @property
    def mark_bottom(self) -> int:
        return self.y + LANE_HEIGHT - 1


@dataclass(frozen=True)
class Timeline:
    lanes: list[Lane]
    height: int
    axis_y: int
    start_label: str
    end_label: str
    # While the deploy waits on a clock: where "now" and the deadline fall.
    now_x: float | None = None
    deadline: Mark | None = None
    label_width: int = LABEL_WIDTH
    axis_end: int = AXIS_END
    width: int = WIDTH

    @property
    def summary(self) -> str:
        return (
            f"Deploy timeline from {self.start_label} to {self.end_label} UTC, "
            f"{len(self.lanes)} lanes"
        )


@dataclass(frozen=True)
class Story:
    headline: Headline
    state_label: str
    queue_wait: int | None  # seconds queued behind other deploys (None: not queued)
    gate_wait: int  # seconds at the gate, over every attempt
    gate_spans: list[tuple[datetime, datetime | None]]
    gate_note: str  # the "At the gate" fact in words ("" without a gate span)
    timeline: Timeline


def gate_spans(
    run: DeployRun, events: Sequence[DeployEvent], now: datetime
) -> list[tuple[datetime, datetime | None]]:
    """Each time the deploy waited at the gate: from entering it (first check or a
    failover) to passing it; the open one ends None."""
    spans: list[tuple[datetime, datetime | None]] = []
    opened: datetime | None = None
    for event in events:
        if event.kind in (Kind.GATING, Kind.FAILOVER) and opened is None:
            opened = event.created_at
        elif event.kind == Kind.GATE_PASSED and opened is not None:
            spans.append((opened, event.created_at))
            opened = None
    if opened is None and run.gate_started_at and not spans:
        opened = run.gate_started_at  # a deploy from before the events existed
    if opened is not None:
        spans.append((opened, run.finished_at if run.is_final else None))
    return spans


def gate_note(
    run: DeployRun,
    events: Sequence[DeployEvent],
    spans: Sequence[tuple[datetime, datetime | None]],
    total: int,
    now: datetime,
) -> str:
    """The gate in words: how long so far while the deploy waits there, how long
    before it ended there (refused, timed out, cancelled), and only once past it
    "passed the gate at once" or how long it waited."""
    if not spans:
        return ""
    waits = len(spans)
    opened, closed = spans[-1]
    over = f" over {waits} waits" if waits > 1 else ""
    in_all = f" ({total} s in all{over})" if waits > 1 else ""
    if closed is None:
        return f"at the gate for {seconds(opened, now)} s{in_all}"
    passed = any(e.kind == Kind.GATE_PASSED and e.created_at >= opened for e in events)
    if not passed and run.state != Run.SUCCEEDED:
        stopped = seconds(opened, closed)
        after = f"after {stopped} s" if stopped else "at once"
        return f"stopped at the gate {after}{in_all}"
    if total:
        return f"waited at the gate {total} s{over}"
    return "passed the gate at once" + (f" ({waits} times)" if waits > 1 else "")


def state_label(run: DeployRun, attempt: DeployAttempt | None) -> str:
    """The run's state in the words of what happened: "dispatched" until a runner
    picked the job up, "waiting at the gate" while no runner is chosen."""
    if run.state == Run.RUNNING and attempt is not None and not attempt.picked_up_at:
        return "dispatched"
    if run.state == Run.GATING:
        return "waiting at the gate" if run.gate_started_at else "gating"
    return str(run.state)


def _failed_over_from(attempts: Sequence[DeployAttempt]) -> list[str]:
    names: list[str] = []
    for a in attempts:
        if a.failover_reason and a.runner.name not in names:
            names.append(a.runner.name)
    return names


def headline(
    run: DeployRun,
    attempts: Sequence[DeployAttempt],
    events: Sequence[DeployEvent],
    now: datetime,
    approval_message: str = "",
) -> Headline:
    last = attempts[-1] if attempts else None
    if run.state == Run.SUCCEEDED:
        where = last.runner.name if last else "?"
        failed = [n for n in _failed_over_from(attempts) if n != where]
        if failed:
            text = f"Succeeded on {where} after failover from {', '.join(failed)}"
        else:
            text = f"Succeeded on {where}"
        return Headline(text, "succeeded")
    if run.state == Run.FAILED:
        return Headline("Failed: " + _failure(run, attempts), "failed")
    if run.state == Run.CANCELLED:
        return Headline(
            "Cancelled" + (f": {run.message}" if run.message else ""), "failed"
        )
    if run.state == Run.QUEUED:
        env = run.environment
        if env.paused:
            why = f": {env.paused_reason}" if env.paused_reason else ""
            return Headline(f"Queued: {env.name} is paused{why}", "warning")
        return Headline("Queued behind the deploy running on " + env.name, "info")
    if run.state == Run.GATING:
        return _gating(run, events, now)
    if last is None or run.state == Run.DISPATCHING:
        target = f" to {last.runner.name}" if last else ""
        return Headline(f"Dispatching{target}", "info")
    if approval_message:
        return Headline(approval_message, "warning")
    failed = [n for n in _failed_over_from(attempts) if n != last.runner.name]
    after = f" after failover from {', '.join(failed)}" if failed else ""
    if not last.picked_up_at and last.dispatched_at:
        timeout = run.timeout("pickup_timeout")
        deadline = last.dispatched_at + timedelta(seconds=timeout)
        return Headline(
            f"Dispatched to {last.runner.name}{after}, waiting for it to pick the "
            "job up",
            "info",
            Countdown(
                deadline,
                max(0, int((deadline - now).total_seconds())),
                timeout,
                "fails over",
                f"{last.runner.name} picks the job up",
            ),
        )
    return Headline(f"Running on {last.runner.name}{after}", "info")


def _gating(run: DeployRun, events: Sequence[DeployEvent], now: datetime) -> Headline:
    waiting = next(
        (e for e in reversed(events) if e.kind in (Kind.GATE_WAITING, Kind.SIGNED_OFF)),
        None,
    )
    if waiting is not None and "signoff" in (waiting.detail or {}):
        # Approvals in the control plane: no runner clock runs while they are awaited.
        return Headline(waiting.message[:1].upper() + waiting.message[1:], "warning")
    if waiting is None or waiting.kind != Kind.GATE_WAITING or not run.gate_started_at:
        return Headline("Choosing a runner", "info")
    timeout = run.timeout("gate_timeout")
    deadline = run.gate_started_at + timedelta(seconds=timeout)
    detail = waiting.detail or {}
    if detail.get("missing_secrets"):
        unless = "the secrets are added in GitHub"
    elif detail.get("overdue_secrets"):
        unless = "the secrets are rotated"
    elif detail.get("busy_wait") is not None:
        unless = "a runner frees up"
    else:
        unless = "a runner recovers"
    return Headline(
        f"Waiting at the gate: {waiting.message}",
        "warning",
        Countdown(
            deadline,
            max(0, int((deadline - now).total_seconds())),
            timeout,
            "fails",
            unless,
        ),
    )


def _failure(run: DeployRun, attempts: Sequence[DeployAttempt]) -> str:
    reason = run.reason
    if reason == DeployRun.Reason.NO_HEALTHY_RUNNER:
        return f"no healthy runner within {run.timeout('gate_timeout')} s"
    if reason == DeployRun.Reason.MAX_ATTEMPTS:
        tried = ", ".join(dict.fromkeys(a.runner.name for a in attempts))
        return f"all {len(attempts)} attempts failed over ({tried})"
    if reason == DeployRun.Reason.APPROVAL_TIMEOUT:
        return f"not approved in GitHub within {run.timeout('approval_timeout')} s"
    if reason == DeployRun.Reason.DEPLOY_FAILED and attempts:
        return f"the deploy job failed on {attempts[-1].runner.name}"
    if run.message:
        return run.message
    return run.get_reason_display() if reason else "failed"


# The SVG timeline --------------------------------------------------------------------

# An attempt's bar after pickup, by its state (running while not final).
OUTCOME_CSS: dict[str, str] = {
    DeployAttempt.State.SUCCEEDED: "seg-succeeded",
    DeployAttempt.State.FAILED: "seg-failed",
    DeployAttempt.State.CANCELLED: "seg-cancelled",
    DeployAttempt.State.CANCELLING: "seg-cancelled",
}


class _Scale:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 1.0)

    def x(self, when: datetime) -> float:
        offset = (when - self.start).total_seconds() / self.span
        return round(LABEL_WIDTH + offset * (AXIS_END - LABEL_WIDTH), 1)


def _segment(
    scale: _Scale, start: datetime, end: datetime, css: str, what: str
) -> Segment:
    x = scale.x(start)
    width = max(scale.x(end) - x, 2.0)  # an instant still shows
    took = seconds(start, end) or 0
    return Segment(x, width, css, f"{what}: {took} s ({hms(start)}–{hms(end)} UTC)")


def timeline(
    run: DeployRun,
    attempts: Sequence[DeployAttempt],
    events: Sequence[DeployEvent],
    spans: Sequence[tuple[datetime, datetime | None]],
    now: datetime,
    countdown: Countdown | None = None,
) -> Timeline:
    end = run.finished_at if run.is_final and run.finished_at else now
    # A waiting deploy's axis runs to its deadline, so the time left shows.
    axis_end = max(end, countdown.deadline) if countdown else end
    scale = _Scale(run.created_at, axis_end)
    lanes: list[Lane] = []
    gate = Lane("Gate", TOP)
    started = run.gate_started_at if not spans else spans[0][0]
    if started and started > run.created_at:
        gate.segments.append(
            _segment(scale, run.created_at, started, "seg-queue", "Queued")
        )
    for opened, closed in spans:
        gate.segments.append(
            _segment(scale, opened, closed or end, "seg-gate", "Waited at the gate")
        )
    lanes.append(gate)
    failovers = {e.attempt_id: e for e in events if e.kind == Kind.FAILOVER}
    for a in attempts:
        lane = Lane(f"#{a.number} {a.runner.name}", TOP + LANE_HEIGHT * len(lanes))
        sent = a.dispatched_at or a.created_at
        stop = a.finished_at or end
        picked = a.picked_up_at
        lane.segments.append(
            _segment(
                scale,
                sent,
                picked or stop,
                "seg-dispatch",
                "Dispatched, waiting for pickup" if a.dispatched_at else "Dispatching",
            )
        )
        if picked:
            outcome = OUTCOME_CSS.get(a.state, "seg-running")
            lane.segments.append(
                _segment(scale, picked, stop, outcome, f"Ran on {a.runner.name}")
            )
        if a.failover_reason:
            event = failovers.get(a.pk)
            when = event.created_at if event else (a.finished_at or end)
            lane.marks.append(
                Mark(
                    scale.x(when),
                    f"Failover at {hms(when)} UTC: {a.get_failover_reason_display()}",
                )
            )
        lanes.append(lane)
    height = TOP + LANE_HEIGHT * len(lanes)
    deadline = None
    if countdown is not None:
        deadline = Mark(
            scale.x(countdown.deadline),
            f"{countdown.what.capitalize()} at {hms(countdown.deadline)} UTC "
            f"unless {countdown.unless}",
        )
    return Timeline(
        lanes=lanes,
        height=height + AXIS_HEIGHT,
        axis_y=height + 15,
        start_label=hms(run.created_at),
        end_label=(
            f"{countdown.what} {hms(axis_end)}"
            if countdown
            else hms(end) + ("" if run.is_final else " (now)")
        ),
        now_x=None if run.is_final else scale.x(now),
        deadline=deadline,
    )


def story(
    run: DeployRun,
    attempts: Sequence[DeployAttempt],
    events: Sequence[DeployEvent],
    now: datetime,
    approval_message: str = "",
) -> Story:
    spans = gate_spans(run, events, now)
    end = run.finished_at if run.is_final and run.finished_at else now
    gate_wait = sum(seconds(a, b or end) or 0 for a, b in spans)
    first_gate = spans[0][0] if spans else run.gate_started_at
    told = headline(run, attempts, events, now, approval_message)
    label = state_label(run, attempts[-1] if attempts else None)
    if run.state == Run.GATING and told.text.startswith("Awaiting approvals"):
        label = "awaiting approval"
    return Story(
        headline=told,
        state_label=label,
        queue_wait=seconds(run.created_at, first_gate) if first_gate else None,
        gate_wait=gate_wait,
        gate_spans=spans,
        gate_note=gate_note(run, events, spans, gate_wait, now),
        timeline=timeline(run, attempts, events, spans, now, told.countdown),
    )
