"""The simulator's records: runners, workflow runs, jobs, secrets, faults and settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

GIB = 1024**3

# Labels every self-hosted runner carries; GitHub gives them fixed ids and type read-only.
DEFAULT_OS = "Linux"
DEFAULT_ARCH = "X64"
READ_ONLY_LABEL_IDS = {"self-hosted": 1, "Linux": 2, "X64": 3, "Windows": 4, "ARM64": 5}


@dataclass
class Runner:
    """One simulated self-hosted runner and the host it runs on."""

    id: int
    name: str
    custom_labels: list[str]
    os: str = DEFAULT_OS
    arch: str = DEFAULT_ARCH
    alive: bool = True
    # What GitHub shows: it lags reality by the offline lag after the host dies.
    status: str = "online"
    offline_at: float | None = None
    job_id: int | None = None
    heartbeats: bool = True
    heartbeat_token: str | None = None
    disk_total_bytes: int = 100 * GIB
    disk_free_bytes: int = 60 * GIB
    load1: float = 0.25
    cpus: int = 4
    booted_at: float = 0.0
    cpu_idle_seconds: float = 0.0
    version: str = "2.330.0"

    @property
    def labels(self) -> list[str]:
        return ["self-hosted", self.os, self.arch, *self.custom_labels]

    @property
    def busy(self) -> bool:
        return self.job_id is not None


@dataclass
class Step:
    """One step of a job, as GitHub lists them."""

    name: str
    number: int
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None


@dataclass
class Job:
    """The single ``deploy`` job of a workflow run."""

    id: int
    run_id: int
    labels: list[str]
    created_at: float
    name: str = "deploy"
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    steps: list[Step] = field(default_factory=list)
    # Simulation bookkeeping, never part of GitHub's answers.
    finish_at: float | None = None
    cancel_at: float | None = None
    lease_expires_at: float | None = None
    note: str = ""

    @property
    def active(self) -> bool:
        return self.status != "completed"


@dataclass
class Run:
    """A workflow run created by a dispatch."""

    id: int
    run_number: int
    repository: str
    workflow_id: int
    ref: str
    inputs: dict[str, Any]
    display_title: str
    head_sha: str
    created_at: float
    updated_at: float
    job_id: int
    status: str = "queued"
    conclusion: str | None = None
    run_started_at: float | None = None
    event: str = "workflow_dispatch"


@dataclass
class Workflow:
    """A workflow file in a repository."""

    id: int
    repository: str
    path: str
    name: str
    created_at: float


@dataclass
class Secret:
    """A secret as GitHub keeps it; the plaintext stays in memory for test assertions."""

    name: str
    created_at: float
    updated_at: float
    plaintext: str
    visibility: str | None = None


@dataclass
class Faults:
    """Injected misbehaviour of the GitHub API (never of the control API)."""

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    secondary_rate_limit_rate: float = 0.0
    too_many_requests_rate: float = 0.0
    latency_ms: float = 0.0
    reject_return_run_details: bool = False
    # The next N workflow dispatches create their run, then answer 502 (a gateway
    # timeout in front of a backend that did the work): the client cannot tell.
    dispatch_errors_after_create: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Config:
    """Timings (simulated seconds) and outside connections; changeable at runtime."""

    pickup_delay: float = 5.0
    job_duration: float = 20.0
    lease_timeout: float = 600.0
    offline_lag: float = 30.0
    cancel_delay: float = 3.0
    queued_job_timeout: float = 24 * 3600.0
    outcome: str = "success"
    rate_limit: int = 5000
    rate_limit_window: float = 3600.0
    rate_limit_fault_reset: float = 60.0
    retry_after: int = 60
    installation_token_lifetime: float = 3600.0
    webhook_url: str = ""
    webhook_secret: str = ""
    # Where the webhook is installed: on the repository or on its organization.
    webhook_scope: str = "repository"
    heartbeat_url: str = ""
    heartbeat_interval: float = 10.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # The shared secret is write-only: the control API only says whether it is set.
        data["webhook_secret"] = bool(self.webhook_secret)
        return data
