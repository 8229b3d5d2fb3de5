"""Exact commits: what a deploy request ships, and what each environment runs now.

A deploy records the SHA its ref stood for when it was requested (``DeployRun.sha``);
the dispatch passes it to the workflow as the ``sha`` input and the job checks that
commit out (failing fast when it is not on the ref), so a push to the branch between
the request and the checkout changes nothing. "Redeploy last good" and "rollback"
request a recorded SHA again.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import OuterRef, Subquery

from controlplane.github import (
    GitHubError,
    GitHubNotFound,
    GitHubValidationError,
    gateway_for,
    is_full_sha,
)
from deploys.models import CommitDate, DeployAttempt, DeployRun, Environment

GITHUB_WEB = "https://github.com"


class CommitLookupError(Exception):
    """The ref could not be resolved: unknown to GitHub (``unavailable`` False: the
    request is wrong) or GitHub did not answer (``unavailable`` True: retry later)."""

    def __init__(self, message: str, *, field: str, unavailable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.unavailable = unavailable


def resolve(env: Environment, ref: str, sha: str = "") -> str:
    """The full SHA to deploy: ``sha`` checked to exist, or what ``ref`` (a branch
    or tag) stands for on GitHub now. One GitHub call; never inside a transaction."""
    wanted = sha or ref
    try:
        commit = gateway_for(env.repository).get_commit(wanted)
    except GitHubValidationError:
        # GitHub's 422 "No commit found for SHA: <ref>".
        field = "sha" if sha else "ref"
        raise CommitLookupError(
            f"{wanted!r} is not a branch, tag or commit of {env.repository}",
            field=field,
            unavailable=False,
        ) from None
    except GitHubNotFound:
        raise CommitLookupError(
            f"GitHub does not know the repository {env.repository} of {env.name} "
            "(or the control plane's credentials may not read it)",
            field="environment",
            unavailable=False,
        ) from None
    except GitHubError as exc:
        raise CommitLookupError(
            f"GitHub did not answer when resolving {wanted!r} to a commit ({exc}); "
            "nothing was created, try again shortly",
            field="ref",
            unavailable=True,
        ) from None
    if sha and commit.sha != sha:
        raise CommitLookupError(
            f"{sha!r} is not a full commit SHA of {env.repository}",
            field="sha",
            unavailable=False,
        )
    if commit.committed_at is not None:
        CommitDate.objects.get_or_create(
            repository=env.repository,
            sha=commit.sha,
            defaults={"committed_at": commit.committed_at},
        )
    return commit.sha


def rollback_target(env: Environment) -> tuple[DeployRun, DeployRun] | None:
    """``(current, target)``: the environment's latest succeeded deploy and the most
    recent succeeded one before it with another recorded SHA (what a rollback ships);
    None when there is nothing to roll back to."""
    succeeded = (
        DeployRun.objects.filter(environment=env, state=DeployRun.State.SUCCEEDED)
        .exclude(sha="")
        .order_by("-finished_at", "-pk")
    )
    current = succeeded.first()
    if current is None:
        return None
    target = (
        succeeded.exclude(sha=current.sha)
        .filter(finished_at__lte=current.finished_at)
        .first()
    )
    return None if target is None else (current, target)


@dataclass(frozen=True)
class Deployed:
    """What one environment runs now: its latest succeeded deploy (None if never)."""

    environment: Environment
    run: DeployRun | None
    previous: DeployRun | None
    runner_name: str
    run_url: str
    compare_url: str
    # GitHub's deployment for the job (environments record it); blank until known.
    deployment_url: str = ""


def web_repository_url(env: Environment, html_url: str = "") -> str:
    """The repository's page on GitHub, from a run's ``html_url`` when known (a
    GitHub Enterprise host or the simulator) or github.com."""
    if "/actions/runs/" in html_url:
        return html_url.split("/actions/runs/", 1)[0]
    return f"{GITHUB_WEB}/{env.repository}"


def compare_url(env: Environment, base: str, head: str, html_url: str = "") -> str:
    if not (is_full_sha(base) and is_full_sha(head)) or base == head:
        return ""
    return f"{web_repository_url(env, html_url)}/compare/{base}...{head}"


def deployment_url(env: Environment, run: DeployRun | None) -> str:
    """The GitHub environment's deployments page, once GitHub told us (a
    ``deployment_status`` webhook) which deployment the run's job made."""
    if run is None or getattr(run, "deployment_id", None) is None:
        return ""
    base = web_repository_url(env, getattr(run, "run_url", "") or "")
    return f"{base}/deployments/{env.github_environment_name}"


def deployed_now() -> list[Deployed]:
    """Per environment (by name), its deploy now and the one before; three queries
    whatever the number of environments."""
    succeeded = DeployRun.objects.filter(
        environment=OuterRef("pk"), state=DeployRun.State.SUCCEEDED
    ).order_by("-finished_at", "-pk")
    envs = list(
        Environment.objects.annotate(
            current_id=Subquery(succeeded.values("pk")[:1]),
            previous_id=Subquery(succeeded.values("pk")[1:2]),
        ).order_by("name", "pk")
    )
    wanted = {pk for env in envs for pk in (env.current_id, env.previous_id) if pk}
    latest = DeployAttempt.objects.filter(run=OuterRef("pk")).order_by("-number")
    runs = {
        run.pk: run
        for run in DeployRun.objects.filter(pk__in=wanted).annotate(
            runner_name=Subquery(latest.values("runner__name")[:1]),
            run_url=Subquery(latest.values("html_url")[:1]),
            deployment_id=Subquery(latest.values("github_deployment_id")[:1]),
        )
    }
    rows = []
    for env in envs:
        run = runs.get(env.current_id)
        previous = runs.get(env.previous_id)
        run_url = getattr(run, "run_url", "") or ""
        rows.append(
            Deployed(
                environment=env,
                run=run,
                previous=previous,
                runner_name=getattr(run, "runner_name", "") or "",
                run_url=run_url,
                deployment_url=deployment_url(env, run),
                compare_url=(
                    compare_url(env, previous.sha, run.sha, run_url)
                    if run is not None and previous is not None
                    else ""
                ),
            )
        )
    return rows


@dataclass(frozen=True)
class HistoryRow:
    """One succeeded deploy on an environment's history, with the compare view from
    the commit it replaced."""

    run: DeployRun
    previous_sha: str
    compare_url: str


def deploy_history(env: Environment, limit: int = 20) -> list[HistoryRow]:
    """The environment's succeeded deploys by commit, newest first (one query)."""
    latest = DeployAttempt.objects.filter(run=OuterRef("pk")).order_by("-number")
    runs = list(
        DeployRun.objects.filter(environment=env, state=DeployRun.State.SUCCEEDED)
        .annotate(
            runner_name=Subquery(latest.values("runner__name")[:1]),
            run_url=Subquery(latest.values("html_url")[:1]),
        )
        .order_by("-finished_at", "-pk")[: limit + 1]
    )
    rows: list[HistoryRow] = []
    for run, older in zip(runs, [*runs[1:], None], strict=False):
        if len(rows) == limit:
            break
        previous = older.sha if older is not None else ""
        url = getattr(run, "run_url", "") or ""
        rows.append(HistoryRow(run, previous, compare_url(env, previous, run.sha, url)))
    return rows
