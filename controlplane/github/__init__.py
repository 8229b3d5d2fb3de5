"""The one gateway to GitHub: the only package that imports PyGithub.

Callers get small typed dataclasses and typed errors, never PyGithub objects. The
gateway owns timeouts, retries with backoff, rate-limit obedience, conditional list
requests (ETag: a 304 costs no API budget), the serialization of writes and the usage
counters behind /metrics.

- :mod:`.errors` and :mod:`.types`: what callers catch and receive.
- :mod:`.auth`: token or GitHub App installation credentials.
- :mod:`.transport`: routes every HTTP request PyGithub makes through the gateway.
- :mod:`.policy`: retries, backoff, rate limits and budget, once per HTTP request.
- :mod:`.purpose`: why each request is made (sync, deploy_poll, dispatch, ...).
- :mod:`.paths`: URL segments checked against GitHub's name grammar.
- :mod:`.core`, :mod:`.runners`, :mod:`.runs`, :mod:`.hooks`, :mod:`.secrets`,
  :mod:`.commits`, :mod:`.environments`: the
  calls, by resource, composed into :class:`GitHubGateway` in :mod:`.gateway`, which
  also keeps the process's one cache of gateways (:func:`gateway_for`).
"""

from controlplane.github.commits import CommitInfo, is_full_sha
from controlplane.github.errors import (
    GitHubAmbiguousWrite,
    GitHubAuthError,
    GitHubConflict,
    GitHubError,
    GitHubInputsRefused,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubUnavailable,
    GitHubValidationError,
)
from controlplane.github.gateway import (
    GitHubGateway,
    gateway,
    gateway_for,
    gateway_from_settings,
    reset_gateway,
)
from controlplane.github.purpose import Purpose, for_purpose
from controlplane.github.types import (
    Clock,
    DispatchResult,
    HookDeliveriesPage,
    HookDeliveryInfo,
    HookInfo,
    HookScope,
    JobInfo,
    PendingDeployment,
    PublicKey,
    RateBudget,
    Review,
    RunInfo,
    RunJobs,
    RunnerApplication,
    RunnerInfo,
    RunnersPage,
    SecretInfo,
    SecretScope,
    Sleep,
    StepInfo,
    UsageSink,
)

__all__ = [
    "Clock",
    "CommitInfo",
    "DispatchResult",
    "GitHubAmbiguousWrite",
    "GitHubAuthError",
    "GitHubConflict",
    "GitHubError",
    "GitHubGateway",
    "GitHubInputsRefused",
    "GitHubNotFound",
    "GitHubRateLimited",
    "GitHubUnavailable",
    "GitHubValidationError",
    "HookDeliveriesPage",
    "HookDeliveryInfo",
    "HookInfo",
    "HookScope",
    "JobInfo",
    "PendingDeployment",
    "PublicKey",
    "Purpose",
    "RateBudget",
    "Review",
    "RunInfo",
    "RunJobs",
    "RunnerApplication",
    "RunnerInfo",
    "RunnersPage",
    "SecretInfo",
    "SecretScope",
    "Sleep",
    "StepInfo",
    "UsageSink",
    "for_purpose",
    "gateway",
    "gateway_for",
    "gateway_from_settings",
    "is_full_sha",
    "reset_gateway",
]
