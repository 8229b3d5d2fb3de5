"""Did the job deploy the requested commit? The run's ``head_sha`` against ``sha``.

The run's ``head_sha`` is its ref's SHA at dispatch; the requested commit
(``DeployRun.sha``) was resolved when the deploy was requested and passed as the
``sha`` input. They differ when the branch moved in between, and always for a
rollback or a redeploy of an older commit. That is still a correct deploy when the
job checked out ``inputs.sha``: the reference workflows do it in their "Check out"
step, which fails fast when the SHA is not on the ref. So the engine:

- accepts a matching ``head_sha`` silently;
- accepts a different one once the job's "Check out" step succeeded, recording a
  ``head_moved`` event naming both SHAs;
- fails the deploy with reason ``wrong_sha`` when the "Check out" step failed (the
  SHA is no longer on the ref: force-push or moved tag), or when the job completed
  successfully without a "Check out" step (a workflow that ignores ``inputs.sha``
  deployed the branch's newest commit, not the requested one).

Runs without a recorded SHA (requested before SHAs were recorded) are not checked.
"""

from __future__ import annotations

from datetime import datetime

from controlplane.github import JobInfo
from deploys.engine.common import Attempt, Kind, Run, event, finish
from deploys.models import DeployAttempt, DeployEvent, DeployRun

CHECKOUT_STEP = "Check out"


def check_head_sha(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> bool | None:
    """None when the deploy may carry on; otherwise it was failed with ``wrong_sha``
    (True: the run changed)."""
    if not run.sha or not job.head_sha or job.head_sha == run.sha:
        return None
    checkout = next((s for s in job.steps if s.name == CHECKOUT_STEP), None)
    if checkout is not None and checkout.conclusion == "success":
        _note_moved(run, attempt, job, now)
        return None
    if checkout is not None and checkout.conclusion == "failure":
        return _wrong_sha(
            run,
            attempt,
            job,
            now,
            f"{run.sha[:12]} is not on {run.ref} any more (now at "
            f"{job.head_sha[:12]}): the job's checkout refused it",
        )
    if job.status == "completed" and job.conclusion == "success":
        return _wrong_sha(
            run,
            attempt,
            job,
            now,
            f"the job deployed {run.ref} at {job.head_sha[:12]}, not the requested "
            f"{run.sha[:12]}: the workflow must check out the sha input",
        )
    return None


def _note_moved(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> None:
    if DeployEvent.objects.filter(
        run=run, attempt=attempt, kind=Kind.HEAD_MOVED
    ).exists():
        return
    event(
        run,
        Kind.HEAD_MOVED,
        f"{run.ref} is at {job.head_sha[:12]}; the job checked out the requested "
        f"{run.sha[:12]}",
        now,
        attempt=attempt,
        head_sha=job.head_sha,
        sha=run.sha,
    )


def _wrong_sha(
    run: DeployRun,
    attempt: DeployAttempt,
    job: JobInfo,
    now: datetime,
    message: str,
) -> bool:
    return finish(
        run,
        Run.FAILED,
        DeployRun.Reason.WRONG_SHA,
        message,
        now,
        attempt=attempt,
        attempt_state=Attempt.FAILED,
        conclusion=job.conclusion or "",
        cleanup=job.status != "completed",
        detail={"head_sha": job.head_sha, "sha": run.sha},
    )
