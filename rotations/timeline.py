"""The secrets page's due-date chart, laid out on the server as SVG: overdue
secrets in their own lane on the left, the others on a time axis from now, labels
stacked in rows so that secrets due the same day (or close together) never
overlap. Each mark carries its details as an SVG ``<title>`` (shown on hover); the
page repeats them as a table for screen readers and for reading."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Chart coordinates (the SVG's viewBox units; the chart scales to its card).
WIDTH = 1000
OVERDUE_WIDTH = 200  # the overdue lane, left of the axis
AXIS_LEFT = OVERDUE_WIDTH + 30
AXIS_RIGHT = WIDTH - 10
ROW = 22  # one label row
TOP = 26  # room for the lane and axis headings
CHAR = 7.6  # an estimate of one label character's width at the chart's font size
LABEL_PAD = 12
MAX_LABEL = 24  # longer names are shortened on the chart (full in the title)


@dataclass(frozen=True)
class Mark:
    schedule: Any
    x: float  # the due date on the axis (or the lane's left edge when overdue)
    y: float  # the label's baseline
    label: str
    anchor: str  # start | end
    overdue: bool
    title: str

    @property
    def label_x(self) -> float:
        return self.x + (6 if self.anchor == "start" else -6)


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    marks: list[Mark]
    ticks: list[Tick]
    height: float
    axis_y: float
    overdue: int
    due: int

    width = WIDTH
    axis_left = AXIS_LEFT
    axis_right = AXIS_RIGHT
    overdue_width = OVERDUE_WIDTH


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "…"


def _title(schedule: Any, now: datetime) -> str:
    due = schedule.next_due
    days = (due - now).total_seconds() / 86400
    when = f"overdue by {int(-days)} d" if days < 0 else f"due in {max(0, int(days))} d"
    owner = f", owner {schedule.owner}" if schedule.owner else ""
    return (
        f"{schedule.name} ({schedule.target_label}): due {due:%Y-%m-%d}, {when}{owner}"
    )


def build(schedules: list[Any], now: datetime, days: int) -> Chart:
    """Place the schedules due within ``days`` of ``now`` (and all overdue ones)."""
    end = now + timedelta(days=days)
    span = (end - now).total_seconds()
    due = sorted(
        (s for s in schedules if s.next_due is not None and s.next_due <= end),
        key=lambda s: (s.next_due, s.name),
    )
    overdue = [s for s in due if s.next_due <= now]
    upcoming = [s for s in due if s.next_due > now]
    marks: list[Mark] = []
    # The overdue lane: one row each, most overdue first.
    for row, schedule in enumerate(overdue):
        marks.append(
            Mark(
                schedule,
                8,
                TOP + ROW * (row + 1),
                _short(schedule.name),
                "start",
                True,
                _title(schedule, now),
            )
        )
    # The axis: each label goes in the first row where it overlaps nothing.
    row_ends: list[float] = []
    for schedule in upcoming:
        fraction = (schedule.next_due - now).total_seconds() / span
        x = AXIS_LEFT + fraction * (AXIS_RIGHT - AXIS_LEFT)
        label = _short(schedule.name)
        width = len(label) * CHAR + LABEL_PAD
        anchor = "start" if x + width <= AXIS_RIGHT else "end"
        start, stop = (x, x + width) if anchor == "start" else (x - width, x)
        row = next((i for i, e in enumerate(row_ends) if e < start), len(row_ends))
        if row == len(row_ends):
            row_ends.append(stop)
        else:
            row_ends[row] = stop
        marks.append(
            Mark(
                schedule,
                round(x, 1),
                TOP + ROW * (row + 1),
                label,
                anchor,
                False,
                _title(schedule, now),
            )
        )
    rows = max(len(overdue), len(row_ends), 1)
    axis_y = TOP + ROW * rows + 12
    ticks = [
        Tick(
            round(AXIS_LEFT + (d / days) * (AXIS_RIGHT - AXIS_LEFT), 1),
            "now" if d == 0 else f"{now + timedelta(days=d):%b %d}",
        )
        for d in range(0, days + 1, 30)
    ]
    return Chart(
        marks=marks,
        ticks=ticks,
        height=axis_y + 24,
        axis_y=axis_y,
        overdue=len(overdue),
        due=len(upcoming),
    )
