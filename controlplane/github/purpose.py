"""Why a GitHub request is made: every request the gateway sends is counted under
one purpose, so the budget panel and ``/metrics`` say what spends the API budget.

A caller that knows better names the purpose around its calls
(``with for_purpose(Purpose.SECRETS_GATE): ...``); otherwise the gateway operation
decides (:data:`OPERATION_PURPOSES`). An installation-token fetch is always counted
as ``installation_token``, whatever call needed the token.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum


class Purpose(StrEnum):
    SYNC = "sync"  # the runner registry sweep
    DEPLOY_POLL = "deploy_poll"  # a deploy watching its run and jobs (fallback)
    DISPATCH = "dispatch"  # starting a deploy's workflow run
    DISPATCH_LOOKUP = "dispatch_lookup"  # finding a run by its correlation token
    CANCEL = "cancel"  # stopping a run (failover, cancel, wrong runner)
    COMMIT_LOOKUP = "commit_lookup"  # a deploy's ref: its exact SHA, branch or tag
    APPROVAL = "approval"  # protection rules: pending deployments, reviews
    PROTECTION_RULE = "protection_rule"  # answering GitHub as a custom protection rule
    SECRETS_GATE = "secrets_gate"  # the deploy gate's secret listing
    SECRETS_AUDIT = "secrets_audit"  # the periodic secrets audit
    ROTATION = "rotation"  # sealing and writing a rotated secret
    WEBHOOK_RECOVERY = "webhook_recovery"  # reading the hook log, redeliveries
    INSTALLATION_TOKEN = "installation_token"  # GitHub App token refresh
    RATE_LIMIT = "rate_limit"  # asking GitHub for the budget (free)
    RUNNER_VERSIONS = "runner_versions"  # the newest runner release (downloads)
    OTHER = "other"  # an operation no purpose was given for
    RUNNER_REMOVAL = "runner_removal"  # an SRE removing a stale runner from GitHub
    CANARY = "canary"  # a canary job on a pool runner: dispatch, lookups, cancel


# The purpose of each gateway operation when the caller names none.
OPERATION_PURPOSES: dict[str, Purpose] = {
    "list_runners_page": Purpose.SYNC,
    "get_runner": Purpose.SYNC,
    "list_run_jobs": Purpose.DEPLOY_POLL,
    "get_run": Purpose.DEPLOY_POLL,
    "get_job": Purpose.DEPLOY_POLL,
    "dispatch_workflow": Purpose.DISPATCH,
    "list_workflow_runs": Purpose.DISPATCH_LOOKUP,
    "find_run_by_token": Purpose.DISPATCH_LOOKUP,
    "cancel_run": Purpose.CANCEL,
    "force_cancel_run": Purpose.CANCEL,
    "get_commit": Purpose.COMMIT_LOOKUP,
    "git_ref_sha": Purpose.COMMIT_LOOKUP,
    "pending_deployments": Purpose.APPROVAL,
    "run_reviews": Purpose.APPROVAL,
    "review_pending_deployments": Purpose.APPROVAL,
    "review_custom_gate": Purpose.PROTECTION_RULE,
    "list_secrets": Purpose.SECRETS_AUDIT,
    "get_public_key": Purpose.ROTATION,
    "put_secret": Purpose.ROTATION,
    "list_hooks": Purpose.WEBHOOK_RECOVERY,
    "list_hook_deliveries": Purpose.WEBHOOK_RECOVERY,
    "redeliver_hook_delivery": Purpose.WEBHOOK_RECOVERY,
    "rate_limit": Purpose.RATE_LIMIT,
    "runner_applications": Purpose.RUNNER_VERSIONS,
    "delete_runner": Purpose.RUNNER_REMOVAL,
}

_CURRENT: contextvars.ContextVar[Purpose | None] = contextvars.ContextVar(
    "github_purpose", default=None
)


def current() -> Purpose:
    """The purpose the request being sent now is counted under."""
    return _CURRENT.get() or Purpose.OTHER


@contextmanager
def for_purpose(purpose: Purpose) -> Iterator[None]:
    """Count every GitHub request made inside the block under ``purpose``."""
    marker = _CURRENT.set(purpose)
    try:
        yield
    finally:
        _CURRENT.reset(marker)


@contextmanager
def default_purpose(operation: str) -> Iterator[None]:
    """Inside a gateway call: the caller's purpose, else the operation's own."""
    if _CURRENT.get() is not None:
        yield
        return
    with for_purpose(OPERATION_PURPOSES.get(operation, Purpose.OTHER)):
        yield
