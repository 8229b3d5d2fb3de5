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
    # The agent follows the interval the control plane answers (an older agent keeps
    # the fleet's interval); the interval last answered, in simulated seconds, None
    # before any answer.
    heartbeat_follows_interval: bool = True
    heartbeat_interval: float | None = None
    disk_total_bytes: int = 100 * GIB
    disk_free_bytes: int = 60 * GIB
    load1: float = 0.25
    cpus: int = 4
    memory_total_bytes: int = 16 * GIB
    memory_available_bytes: int = 10 * GIB
    booted_at: float = 0.0
    cpu_idle_seconds: float = 0.0
    version: str = "2.330.0"
    # False: online and idle for GitHub, yet it never takes a job (a full work
    # folder, a refused runner version): what only a canary job reveals.
    takes_jobs: bool = True

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


# The runner input a workflow's pinned job targets: ``runs-on: [self-hosted, <runner>]``.
RUNNER_EXPRESSION = "${{ inputs.runner }}"
# Where the runs-on labels name no self-hosted runner, GitHub's hosted pool runs the job.
HOSTED_RUNNER_GROUP = "GitHub Actions"


@dataclass
class JobSpec:
    """One job of a workflow definition; ``runs_on`` and ``environment`` may hold
    ``${{ inputs.NAME }}`` expressions, resolved from the dispatch inputs."""

    name: str
    runs_on: list[str]
    needs: list[str] = field(default_factory=list)
    environment: str | None = None
    # Simulated seconds the job runs, and how it ends; None takes the config's.
    duration: float | None = None
    outcome: str | None = None

    @property
    def hosted(self) -> bool:
        """Runs on a GitHub-hosted runner: its labels do not ask for ``self-hosted``."""
        return "self-hosted" not in [label.casefold() for label in self.runs_on]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorkflowInput:
    """One input a workflow file declares under ``on.workflow_dispatch.inputs``."""

    name: str
    required: bool = False
    # None: the file gives no default, so a required input must be sent.
    default: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_jobs() -> list[JobSpec]:
    """Today's single-job reference workflow: ``deploy`` on the runner named in inputs."""
    return [JobSpec("deploy", ["self-hosted", RUNNER_EXPRESSION])]


@dataclass
class Job:
    """One job of a workflow run, created once the jobs it needs have succeeded."""

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
    environment: str | None = None
    hosted: bool = False
    duration: float | None = None
    outcome: str | None = None

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
    # Jobs created so far, in creation order, and the resolved specs of those still
    # blocked on their ``needs``.
    job_ids: list[int] = field(default_factory=list)
    blocked: list[JobSpec] = field(default_factory=list)
    status: str = "queued"
    conclusion: str | None = None
    run_started_at: float | None = None
    event: str = "workflow_dispatch"
    cancelled: bool = False
    # Background CI traffic (control API), not a deploy.
    traffic: bool = False
    # The full ref dispatched (``refs/tags/v2``) when one was given: it decides
    # between a branch and a tag of the same name, as GitHub does; ``ref`` is the
    # short name GitHub shows as ``head_branch``.
    git_ref: str = ""


@dataclass
class Command:
    """What a workflow's self-hosted jobs run instead of lasting a duration
    (:mod:`githubsim.commands`)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    hosts_dir: str | None = None
    timeout: float = 120.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Workflow:
    """A workflow file in a repository."""

    id: int
    repository: str
    path: str
    name: str
    created_at: float
    jobs: list[JobSpec] = field(default_factory=default_jobs)
    command: Command | None = None
    # The dispatch inputs its loaded file declares; None when no file was loaded (a
    # job list, or none at all): then a dispatch may send any inputs.
    inputs: list[WorkflowInput] | None = None


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
    # GitHub's quirk: the runner list shows busy=false for a runner in the middle of a
    # job. The share of each ``busy_flap_period`` window a busy runner is shown idle:
    # 0 never, 1 always, in between for a stable random share of (runner, job, window).
    busy_false_rate: float = 0.0
    busy_flap_period: float = 10.0
    # The newest runner release GitHub offers (its runner downloads endpoint).
    runner_version: str = "2.330.0"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # The shared secret is write-only: the control API only says whether it is set.
        data["webhook_secret"] = bool(self.webhook_secret)
        return data
