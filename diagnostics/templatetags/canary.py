"""``{% canary_strip runner %}``: the runner page's canary history, one square per
canary (green passed, red failed or not picked up, grey in flight or never
dispatched, light grey cancelled for an SRE's run), oldest left; its own tag so the
runner page needs one include line."""

from __future__ import annotations

from typing import Any

from django import template

from controlplane.runbooks import runbook_url
from diagnostics import canary
from diagnostics.models import HostRun
from runners.models import Runner
from runners.states import RUNBOOKS, Reason

register = template.Library()

_COLOURS = {
    HostRun.State.SUCCEEDED: "pass",
    HostRun.State.FAILED: "fail",
}


def colour(run: HostRun) -> str:
    if run.state == HostRun.State.CANCELLED:
        # It gave way to an SRE's run: neither a pass nor a failure.
        return "cancelled"
    if run.github_run_id is None and run.is_final:
        # Never dispatched (the budget held it back, GitHub refused the workflow):
        # it says nothing of the runner.
        return "none"
    if run.state == HostRun.State.TIMED_OUT:
        return "fail"
    return _COLOURS.get(HostRun.State(run.state), "none")


@register.inclusion_tag("diagnostics/canary_strip.html")
def canary_strip(runner: Runner) -> dict[str, Any]:
    runs = canary.history(runner)
    for run in runs:
        run.runner = runner  # shown by name: no query per run
    return {
        "runner": runner,
        "cells": [(run, colour(run)) for run in runs],
        "latest": runs[-1] if runs else None,
        "runbook": runbook_url(RUNBOOKS[Reason.CANARY_FAILED]) or "",
    }
