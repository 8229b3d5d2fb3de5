"""The inputs of a deploy dispatch, and a team's copy of the workflow that lacks some.

GitHub refuses a dispatch (422, and creates no run) that sends an input the workflow
file does not declare. A copy of the reference workflow made before an input was
added to it would then fail every deploy. When the refusal names only inputs the
deploy can do without (``OPTIONAL_INPUTS``), the dispatch goes again at once without
them: the 422 created nothing, so this is no duplicate. The environment remembers,
per workflow file, what the file lacks (:class:`UndeclaredInput`), so later deploys
do not pay the refusal each time. When it names an essential input, the deploy fails
saying what to add to the workflow.

How the memory ends: only a dispatch that sends the input again can tell that the
file has gained it (the file's text is not read: that would cost a contents call per
deploy and a permission the token may lack). So an input GitHub refused is left out
for ``REMEMBERED_FOR``, then sent again: a team that updates its workflow sees the
ticket in its runs' names within that time, and a team that does not pays one 422
per environment in that time. Pointing the environment at another workflow file
starts afresh, since the memory is kept per file.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controlplane.github import DispatchResult, GitHubInputsRefused, gateway_for
from deploys.change_tickets import for_github
from deploys.engine.common import DISPATCH_INPUTS, OPTIONAL_INPUTS, Kind, event
from deploys.models import DeployAttempt, DeployRun, Environment, UndeclaredInput

REMEMBERED_FOR = timedelta(hours=1)
ADOPTING = "README, Adopting the reference workflows"


def dispatch_inputs(run: DeployRun, attempt: DeployAttempt) -> dict[str, str]:
    """Every input of the attempt's dispatch (``DISPATCH_INPUTS``)."""
    inputs = {"runner": attempt.runner.name, "token": attempt.token}
    inputs.update({"sha": run.sha} if run.sha else {})  # the exact commit to check out
    inputs["environment"] = run.environment.github_environment_name
    # Shown in the run's name; its characters are checked again before it leaves.
    inputs["ticket"] = for_github(run.change_ticket)
    return inputs


def dispatch(run: DeployRun, attempt: DeployAttempt, now: datetime) -> DispatchResult:
    """Send the attempt's dispatch, without the optional inputs the workflow lacks.

    1. Leave out the optional inputs GitHub refused for the environment's workflow
       file less than ``REMEMBERED_FOR`` ago.
    2. GitHub refusing only optional inputs: remember them and dispatch again at once
       without them. Any other refusal (and any error of the second dispatch) is the
       caller's to handle.
    3. GitHub taking an input it refused longer ago: the file has it now; forget it.

    A dispatch that leaves an input out says so, and what it costs, on the timeline.
    """
    env = run.environment
    gateway = gateway_for(env.repository)
    wanted = dispatch_inputs(run, attempt)
    known = {
        row.name: row.refused_at
        for row in UndeclaredInput.objects.filter(
            environment=env, workflow_file=env.workflow_file
        )
    }
    left_out = {name for name, at in known.items() if now - at < REMEMBERED_FOR}
    if left_out:
        names = sorted(left_out)
        note(run, attempt, now, names, refused_at=max(known[n] for n in names))
    try:
        result = gateway.dispatch_workflow(
            env.workflow_file, run.ref, without(wanted, left_out)
        )
    except GitHubInputsRefused as exc:
        dropped = optional_only(exc)
        if not dropped:
            raise
        remember(env, dropped, now)
        note(run, attempt, now, dropped, refused_at=None)
        return gateway.dispatch_workflow(
            env.workflow_file, run.ref, without(wanted, left_out | set(dropped))
        )
    gained = set(known) - left_out
    if gained:
        UndeclaredInput.objects.filter(
            environment=env, workflow_file=env.workflow_file, name__in=gained
        ).delete()
    return result


def without(inputs: dict[str, str], names: set[str]) -> dict[str, str]:
    return {name: value for name, value in inputs.items() if name not in names}


def optional_only(refusal: GitHubInputsRefused) -> list[str]:
    """The inputs GitHub refused as undeclared when every one is optional, else []."""
    if refusal.missing or not refusal.unexpected:
        return []
    if any(name not in OPTIONAL_INPUTS for name in refusal.unexpected):
        return []
    return list(refusal.unexpected)


def remember(env: Environment, names: list[str], now: datetime) -> None:
    for name in names:
        UndeclaredInput.objects.update_or_create(
            environment=env,
            workflow_file=env.workflow_file,
            name=name,
            defaults={"refused_at": now},
        )


def note(
    run: DeployRun,
    attempt: DeployAttempt,
    now: datetime,
    names: list[str],
    *,
    refused_at: datetime | None,
) -> None:
    """The timeline's word on a dispatch sent without ``names``, which GitHub
    refused at ``refused_at`` (None: just now)."""
    file = run.environment.workflow_file
    costs = "; ".join(OPTIONAL_INPUTS[name] for name in names)
    if refused_at is None:
        why = f"GitHub refused {inputs_named(names)}, which the workflow file {file} "
        why += f"does not declare: dispatched again at once without {it(names)}"
    else:
        why = f"sent without {inputs_named(names)}, which the workflow file {file} "
        why += f"does not declare (GitHub refused {it(names)} at "
        why += f"{refused_at:%Y-%m-%d %H:%M} UTC)"
    event(
        run,
        Kind.INPUT_LEFT_OUT,
        f"{why}; {costs}. Add {it(names)} to the workflow ({ADOPTING}).",
        now,
        attempt=attempt,
        inputs=names,
        workflow_file=file,
    )


def refusal_message(env: Environment, refusal: GitHubInputsRefused) -> str:
    """Why GitHub refused the inputs, and what to change in the workflow file."""
    file = env.workflow_file
    parts = []
    if refusal.unexpected:
        names = list(refusal.unexpected)
        parts.append(
            f"the workflow file {file} does not declare {inputs_named(names)}, "
            f"which every deploy sends: add {it(names)} under "
            "on.workflow_dispatch.inputs as the reference workflows in "
            "deploys/workflows/ do"
        )
    if refusal.missing:
        names = list(refusal.missing)
        parts.append(
            f"the workflow file {file} requires {inputs_named(names)}, which the "
            f"dispatch did not send (a deploy sends {', '.join(DISPATCH_INPUTS)}): "
            "give any other input a default or make it optional"
        )
    return f"GitHub refused the dispatch: {'; '.join(parts)} ({ADOPTING})."


def inputs_named(names: list[str]) -> str:
    return f"the input{'s' if len(names) > 1 else ''} {' and '.join(names)}"


def it(names: list[str]) -> str:
    return "them" if len(names) > 1 else "it"
