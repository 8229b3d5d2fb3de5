"""The control plane as a custom deployment protection rule: nothing deploys around it.

With the control plane's GitHub App enabled as a custom protection rule on a managed
GitHub environment, GitHub holds every job that declares the environment and asks
the App (a ``deployment_protection_rule`` webhook) before it runs. The answer:

- a run the control plane dispatched (its correlation token in the run-name, its
  deploy still active and aimed at this environment) is approved at once: it passed
  the gate before it was dispatched;
- any other run (started from GitHub's UI, the API, another workflow) is approved
  only if it passes the same rules a requested deploy meets now: the environment is
  not paused or frozen, the job is pinned to a runner of the environment's pool that
  may take a deploy under its signal policy, and the ref and commit satisfy the
  environment's deploy rules (``deploys.rules``: allowed refs, promotion), and
  the environment requires no approvals in the control plane (only a deploy
  requested there can collect them); otherwise it is rejected with a comment that
  says why and links the environment's page.

Each request is stored (``GateReview``, one per delivery), answered through the
run's callback (``POST .../actions/runs/{run_id}/deployment_protection_rule``) by the
webhook task right after its transaction commits, and retried by the pending-webhooks
sweep while GitHub cannot be reached. Answers for runs started elsewhere are audited
(``environment.protection_review``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from prometheus_client import Counter

from controlplane import audit
from controlplane.github import GitHubError, gateway_for
from controlplane.github.errors import GitHubUnavailable, GitHubValidationError
from deploys import rules
from deploys.commits import CommitLookupError
from deploys.models import (
    CORRELATION_TOKEN,
    DeployAttempt,
    DeployRun,
    Environment,
    GateReview,
    WebhookDelivery,
)
from runners.models import Runner

log = logging.getLogger(__name__)

EVENT = "deployment_protection_rule"
_CALLBACK = re.compile(
    r"/repos/(?P<repository>[^/]+/[^/]+)/actions/runs/(?P<run>\d+)"
    r"/deployment_protection_rule$"
)
# An unanswered request is tried again after this long, this many times at most.
RETRY_AFTER = timedelta(seconds=10)
MAX_TRIES = 20
# GitHub holds a job for its protection rules for up to 30 days; past a day nobody
# waits for this answer any more.
GIVE_UP_AFTER = timedelta(days=1)

REVIEWS = Counter(
    "controlplane_protection_rule_reviews",
    "Answers sent to GitHub as the custom deployment protection rule, by whether "
    "the run was the control plane's own dispatch and the decision.",
    ["origin", "decision"],
)
FAILURES = Counter(
    "controlplane_protection_rule_answer_failures",
    "Protection-rule answers GitHub did not take (unreachable, refused).",
)


@dataclass(frozen=True)
class GateRequest:
    """What GitHub asks: may run ``run_id`` deploy to ``environment``?"""

    repository: str
    run_id: int
    environment: str
    ref: str
    sha: str


def parse(payload: dict[str, Any]) -> GateRequest:
    """The request in a ``deployment_protection_rule`` payload (ValueError, KeyError
    or TypeError when its shape is wrong)."""
    if payload.get("action") != "requested":
        raise ValueError(f"action {payload.get('action')!r} is not 'requested'")
    match = _CALLBACK.search(str(payload["deployment_callback_url"]))
    if match is None:
        raise ValueError("deployment_callback_url names no workflow run")
    environment = payload["environment"]
    if not isinstance(environment, str) or not environment:
        raise ValueError("environment is missing")
    deployment = payload.get("deployment") or {}
    repository = payload["repository"]["full_name"]
    if str(repository).casefold() != match["repository"].casefold():
        raise ValueError("the callback names another repository")
    return GateRequest(
        repository=str(repository),
        run_id=int(match["run"]),
        environment=environment,
        ref=str(deployment.get("ref") or ""),
        sha=str(deployment.get("sha") or ""),
    )


def managed_environment(request: GateRequest) -> Environment | None:
    """The environment the control plane manages for this GitHub environment."""
    for env in Environment.objects.filter(repository__iexact=request.repository):
        if env.github_environment_name.casefold() == request.environment.casefold():
            return env
    return None


@dataclass(frozen=True)
class Answer:
    state: str  # "approved" or "rejected"
    comment: str
    environment: Environment | None = None
    deploy_run: DeployRun | None = None


def decide(request: GateRequest, now: datetime) -> Answer:
    """Approve or reject the run (may ask GitHub for the run and its jobs)."""
    env = managed_environment(request)
    if env is None:
        return Answer(
            "rejected",
            f"The runner control plane manages no environment named "
            f"{request.environment!r} in {request.repository}: deploys there must "
            "be configured in the control plane first.",
        )
    gateway = gateway_for(env.repository)
    run = gateway.get_run(request.run_id)
    token = CORRELATION_TOKEN.search(f"{run.display_title} {run.name}")
    attempt = (
        DeployAttempt.objects.select_related("run", "runner")
        .filter(token=token.group(0))
        .first()
        if token is not None
        else None
    )
    if attempt is not None:
        return _own_dispatch(env, attempt)
    refusals = outside_refusals(
        env, request, gateway.list_run_jobs(request.run_id), now
    )
    if refusals:
        return Answer("rejected", _rejection(env, refusals), env)
    return Answer(
        "approved",
        "Passed the runner control plane's gate for a run started outside it: "
        f"{env.name} is open and its pinned runner may take a deploy.",
        env,
    )


def _own_dispatch(env: Environment, attempt: DeployAttempt) -> Answer:
    run = attempt.run
    if run.environment_id != env.pk:
        return Answer(
            "rejected",
            f"This run was dispatched by the control plane as deploy #{run.pk} to "
            f"another environment, not to {env.name}.",
            env,
            run,
        )
    if attempt.is_final or run.state in DeployRun.FINAL_STATES:
        return Answer(
            "rejected",
            f"Deploy #{run.pk} of the control plane no longer runs this attempt "
            f"(the attempt is {attempt.state}, the deploy {run.state}).",
            env,
            run,
        )
    return Answer(
        "approved",
        f"Deploy #{run.pk} of the runner control plane: dispatched to "
        f"{attempt.runner.name} after its gate.",
        env,
        run,
    )


def outside_refusals(
    env: Environment, request: GateRequest, jobs: list[Any], now: datetime
) -> list[str]:
    """Why a run started outside the control plane may not deploy to ``env`` now
    (empty: it may), by the rules a deploy requested here meets."""
    refusals: list[str] = []
    if env.paused:
        refusals.append(
            f"deploys to {env.name} are paused"
            + (f": {env.paused_reason}" if env.paused_reason else "")
        )
    window = env.freeze_at(now)
    if window is not None:
        refusals.append(f"{env.name} is frozen ({window.reason})")
    if env.signoffs_required:
        refusals.append(
            f"{env.name} needs {env.signoffs_required} approval(s) in the control "
            "plane, which only a deploy requested there can collect"
        )
    refusals.extend(_runner_refusals(env, jobs, now))
    try:
        refusals.extend(
            refusal.message
            for refusal in rules.check(env, request.ref, request.sha, now)
        )
    except CommitLookupError as exc:
        if exc.unavailable:
            raise GitHubUnavailable(exc.message) from None
        refusals.append(exc.message)
    return refusals


def _runner_refusals(env: Environment, jobs: list[Any], now: datetime) -> list[str]:
    """The waiting job must be pinned to a runner of the pool that may deploy."""
    labels = {
        label.casefold()
        for job in jobs
        if job.status == "waiting"
        for label in job.labels
    }
    pool = list(env.pool())
    pinned = [entry.runner for entry in pool if entry.runner.name.casefold() in labels]
    if not pinned:
        others = Runner.objects.filter(name__in=sorted(labels)).values_list(
            "name", flat=True
        )
        if others:
            return [
                f"runner {', '.join(sorted(others))} is not in the pool of {env.name}"
            ]
        return [
            f"the job is not pinned to a runner of the pool of {env.name} "
            "(its runs-on must name one)"
        ]
    runner = pinned[0]
    verdict = env.judge(runner, now)
    if verdict.eligible:
        return []
    return [
        f"runner {runner.name} may not take a deploy: {'; '.join(verdict.blocking)}"
    ]


def _rejection(env: Environment, refusals: list[str]) -> str:
    page = settings.SITE_URL.rstrip("/") + reverse(
        "deploys:environment-detail", args=[env.name]
    )
    return (
        "Refused by the runner control plane: "
        + "; ".join(refusals)
        + f". Request the deploy in the control plane instead: {page}"
    )[:1000]


def answer(delivery_id: int, now: datetime | None = None) -> GateReview | None:
    """Decide and answer the request of one stored delivery, once. Returns its
    review (None when the delivery is not such a request)."""
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, event=EVENT).first()
    if delivery is None:
        return None
    request = parse(delivery.payload or {})
    review, _ = GateReview.objects.get_or_create(
        delivery=delivery,
        defaults={
            "repository": request.repository,
            "github_run_id": request.run_id,
            "github_environment": request.environment,
            "requested_at": delivery.received_at,
        },
    )
    if review.answered_at is not None:
        return review
    review.tries += 1
    review.error = ""  # an earlier try's failure no longer holds
    try:
        decision = decide(request, now)
        review.environment = decision.environment
        review.deploy_run = decision.deploy_run
        review.decision = decision.state
        review.comment = decision.comment[:1000]
        gateway_for(request.repository).review_custom_gate(
            request.run_id, request.environment, decision.state, decision.comment
        )
    except GitHubValidationError as exc:
        # Nothing waits any more (answered already, run cancelled): done.
        review.error = f"GitHub took no answer: {exc}"[:500]
    except GitHubError as exc:
        FAILURES.inc()
        review.error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("protection rule answer for run %s failed: %s", request.run_id, exc)
        review.save()
        return review
    review.answered_at = timezone.now()
    review.save()
    origin = "control_plane" if review.deploy_run_id else "elsewhere"
    REVIEWS.labels(origin=origin, decision=review.decision).inc()
    if review.deploy_run_id is None:
        audit.record(
            "github-protection-rule",
            "environment.protection_review",
            review.environment,
            decision=review.decision,
            repository=review.repository,
            run=review.github_run_id,
            github_environment=review.github_environment,
            comment=review.comment,
        )
    return review


def retry_unanswered(now: datetime | None = None, *, limit: int = 50) -> int:
    """Answer again the requests GitHub could not take (or that no worker answered
    yet); returns how many were tried."""
    now = now or timezone.now()
    due = (
        WebhookDelivery.objects.filter(
            event=EVENT,
            outcome=WebhookDelivery.Outcome.MATCHED,
            received_at__lte=now - RETRY_AFTER,
            received_at__gte=now - GIVE_UP_AFTER,
        )
        .filter(
            Q(gate_review__isnull=True)
            | Q(gate_review__answered_at__isnull=True, gate_review__tries__lt=MAX_TRIES)
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    tried = 0
    for pk in due:
        answer(pk, now)
        tried += 1
    return tried
