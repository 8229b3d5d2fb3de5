"""What the gateway returns: small frozen data classes, never PyGithub objects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

Clock = Callable[[], float]
Sleep = Callable[[float], None]
# sink(counter, response headers or None): one call per counted event.
UsageSink = Callable[[str, Mapping[str, str] | None], None]
SecretScope = Literal["repository", "environment", "organization"]
HookScope = Literal["repository", "organization"]

FAILED_CONCLUSIONS = ("failure", "cancelled")


def parse_time(value: Any) -> datetime | None:
    """A GitHub timestamp (``2026-01-02T03:04:05Z``) or None when absent."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class RunnerInfo:
    id: int
    name: str
    os: str
    status: str
    busy: bool
    labels: tuple[str, ...]
    # The runner application's version ("" until it connected once).
    version: str = ""


@dataclass(frozen=True)
class RunnerApplication:
    """One download of the runner application GitHub offers (its newest release)."""

    os: str
    architecture: str
    filename: str
    download_url: str


@dataclass(frozen=True)
class RunnersPage:
    """One page of the runner list; ``not_modified`` means the ETag still matched."""

    page: int
    not_modified: bool
    runners: list[RunnerInfo]
    etag: str | None
    last_page: int | None
    total_count: int | None

    @property
    def has_next(self) -> bool:
        return self.last_page is not None and self.page < self.last_page


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    display_title: str
    status: str | None
    conclusion: str | None
    html_url: str
    head_branch: str | None
    head_sha: str
    event: str
    run_attempt: int
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class StepInfo:
    name: str
    number: int
    status: str
    conclusion: str | None


@dataclass(frozen=True)
class JobInfo:
    id: int
    run_id: int
    name: str
    status: str
    conclusion: str | None
    runner_id: int | None
    runner_name: str | None
    labels: tuple[str, ...]
    html_url: str | None
    started_at: datetime | None
    completed_at: datetime | None
    steps: tuple[StepInfo, ...]
    # The commit the run was created for: the ref's SHA at dispatch.
    head_sha: str = ""
    # When GitHub created the job: for a job that ``needs`` others, once they succeeded.
    created_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status != "completed"

    @property
    def failed_step(self) -> StepInfo | None:
        return next((s for s in self.steps if s.conclusion == "failure"), None)

    @property
    def is_genuine_failure(self) -> bool:
        """The deploy itself failed: one of its steps failed. Never worth a failover."""
        return self.conclusion == "failure" and self.failed_step is not None

    @property
    def is_infrastructure_failure(self) -> bool:
        """The job failed or was cancelled with no failed step: the runner was lost,
        shut down or never ran it, so another runner may succeed."""
        return self.conclusion in FAILED_CONCLUSIONS and self.failed_step is None


@dataclass(frozen=True)
class RunJobs:
    """A run's jobs from a conditional request; ``not_modified``: the list is as it
    was when ``etag`` was sent (a free 304), and ``jobs`` is empty."""

    jobs: list[JobInfo]
    etag: str | None
    not_modified: bool


@dataclass(frozen=True)
class DispatchResult:
    """``run_id`` is None when the server cannot return run details; find the run by
    its correlation token then."""

    run_id: int | None
    run_url: str | None
    html_url: str | None


@dataclass(frozen=True)
class HookInfo:
    id: int
    url: str
    active: bool
    events: tuple[str, ...]


@dataclass(frozen=True)
class HookDeliveryInfo:
    """One entry of a webhook's delivery log (each redelivery is an entry too)."""

    id: int
    guid: str
    event: str
    action: str | None
    status_code: int
    status: str
    redelivery: bool
    delivered_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class HookDeliveriesPage:
    deliveries: list[HookDeliveryInfo]
    # The cursor of the next (older) page from the Link header; None on the last.
    next_cursor: str | None


@dataclass(frozen=True)
class SecretInfo:
    name: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    key: str


@dataclass(frozen=True)
class RateBudget:
    remaining: int | None
    limit: int | None
    reset: int | None


@dataclass(frozen=True)
class PendingDeployment:
    """A protection rule a workflow run's job waits for, in one environment."""

    environment_id: int
    environment: str
    wait_timer: int  # minutes
    wait_timer_started_at: datetime | None
    current_user_can_approve: bool
    reviewers: tuple[str, ...]  # user logins or team slugs

    @property
    def needs_review(self) -> bool:
        return bool(self.reviewers)

    @property
    def wait_until(self) -> datetime | None:
        """When the wait timer lets the job go (None without one)."""
        if not self.wait_timer or self.wait_timer_started_at is None:
            return None
        return self.wait_timer_started_at + timedelta(minutes=self.wait_timer)


@dataclass(frozen=True)
class Review:
    """One approval or rejection of a run's deployments."""

    state: str  # approved | rejected
    user: str
    comment: str
    environments: tuple[str, ...]
