"""The environment page's deploy outcome charts, laid out on the server as SVG (the
CSP allows no scripts): deploys per day stacked by outcome, lead time per change,
and each failed change until the deploy that restored it. Every mark carries its
details as an SVG ``<title>``; the page repeats the figures as tables for screen
readers and for reading."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from deploys.dora import Figures

# Chart coordinates (the SVG's viewBox units; each chart scales to its card).
WIDTH = 380
LEFT = 44  # room for the value axis labels
RIGHT = WIDTH - 4
TOP = 8
PLOT = 100  # the plot's height
HEIGHT = TOP + PLOT + 22  # room for the time axis labels
LANE = 14  # one row of the restores chart
# Succeeded, failed after reaching a runner, failed before reaching one.
OUTCOMES = (
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("not_run", "failed before reaching a runner"),
)


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 20 min``, ``2 d 4 h``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Tick:
    at: float  # x on the time axis, y on the value axis
    label: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    rects: list[Rect]
    dots: list[Dot]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    height: float
    axis_y: float
    summary: str

    width = WIDTH
    left = LEFT
    right = RIGHT


def _x(at: datetime, figures: Figures) -> float:
    span = (figures.now - figures.start).total_seconds()
    fraction = (at - figures.start).total_seconds() / span
    return round(LEFT + min(1.0, max(0.0, fraction)) * (RIGHT - LEFT), 1)


def _time_ticks(figures: Figures) -> list[Tick]:
    """The window's first day, its middle and today."""
    days = figures.days
    picks = [days[0], days[len(days) // 2], days[-1]]
    slot = (RIGHT - LEFT) / len(days)
    # The end labels stay inside the chart.
    anchors = ("start", "middle", "end")
    xs = (LEFT, LEFT + days.index(picks[1]) * slot + slot / 2, RIGHT)
    return [
        Tick(round(x, 1), f"{d.day:%b %d}", anchor)
        for x, d, anchor in zip(xs, picks, anchors, strict=True)
    ]


def _nice(top: float) -> float:
    """A round upper bound at or above ``top`` (1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(top))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= top)


def deploys_per_day(figures: Figures) -> Chart:
    top = _nice(
        max((d.succeeded + d.failed + d.not_run for d in figures.days), default=1)
    )
    slot = (RIGHT - LEFT) / len(figures.days)
    rects: list[Rect] = []
    for index, day in enumerate(figures.days):
        y = float(TOP + PLOT)
        for (attr, words), count in zip(
            OUTCOMES, (day.succeeded, day.failed, day.not_run), strict=True
        ):
            if not count:
                continue
            height = PLOT * count / top
            y -= height
            rects.append(
                Rect(
                    round(LEFT + index * slot + 1, 1),
                    round(y, 1),
                    round(max(1.0, slot - 2), 1),
                    round(height, 1),
                    attr,
                    f"{day.day:%Y-%m-%d}: {count} {words}",
                )
            )
    axis_y = TOP + PLOT
    total = sum(d.succeeded + d.failed + d.not_run for d in figures.days)
    return Chart(
        rects=rects,
        dots=[],
        x_ticks=_time_ticks(figures),
        y_ticks=[Tick(TOP, f"{top:g}"), Tick(axis_y, "0")],
        height=HEIGHT,
        axis_y=axis_y,
        summary=f"{total} finished deploys in {figures.window_days} days, per day "
        "by outcome.",
    )


# Round tops for the lead time axis: minutes, hours, days.
DURATION_TOPS = [
    60 * m for m in (1, 5, 15, 30, 60, 120, 240, 360, 720, 1440, 2880, 4320, 10080)
]


def _nice_duration(top: float) -> float:
    return float(
        next((t for t in DURATION_TOPS if t >= top), _nice(top / 86400) * 86400)
    )


def lead_times(figures: Figures) -> Chart:
    top = _nice_duration(
        max((item.seconds for item in figures.lead_times), default=3600)
    )
    dots = [
        Dot(
            _x(item.deployed_at, figures),
            round(TOP + PLOT - PLOT * item.seconds / top, 1),
            f"{item.sha[:7]} deployed {item.deployed_at:%Y-%m-%d %H:%M} UTC, "
            f"{duration(item.seconds)} after its commit (deploy #{item.run_id})",
        )
        for item in figures.lead_times
    ]
    axis_y = TOP + PLOT
    return Chart(
        rects=[],
        dots=dots,
        x_ticks=_time_ticks(figures),
        y_ticks=[Tick(TOP, duration(top)), Tick(axis_y, "0")],
        height=HEIGHT,
        axis_y=axis_y,
        summary=f"Lead time of {len(dots)} changes, by the day they were deployed.",
    )


def restores(figures: Figures) -> Chart:
    """Each failed change as a bar from its failure to the deploy that restored it
    (to now, when none has yet), in the first row where it overlaps nothing."""
    rects: list[Rect] = []
    row_ends: list[float] = []
    for item in figures.failures:
        start = _x(item.failed_at, figures)
        end = _x(item.restored_at or figures.now, figures)
        row = next((i for i, e in enumerate(row_ends) if e < start), len(row_ends))
        if row == len(row_ends):
            row_ends.append(end)
        else:
            row_ends[row] = end
        how = "was rolled back" if item.rolled_back else "failed"
        if item.restored_at is None or item.seconds is None:
            kind = "failing"
            after = "still failing: no good deploy since"
        else:
            kind = "restored"
            after = (
                f"restored by deploy #{item.restored_by} after {duration(item.seconds)}"
            )
        rects.append(
            Rect(
                start,
                TOP + row * LANE,
                round(max(4.0, end - start), 1),
                LANE - 4,
                kind,
                f"deploy #{item.run_id} ({item.sha[:7] or 'no commit'}) {how}, "
                f"{item.failed_at:%Y-%m-%d %H:%M} UTC; {after}",
            )
        )
    axis_y = TOP + max(1, len(row_ends)) * LANE + 4
    return Chart(
        rects=rects,
        dots=[],
        x_ticks=_time_ticks(figures),
        y_ticks=[],
        height=axis_y + 22,
        axis_y=axis_y,
        summary=f"{len(rects)} failed changes, each until the deploy that restored it.",
    )
