"""Why a deploy request is refused: each error carries its HTTP status, a code for
API clients and the field to fix (``deploys.triggers`` raises them, the API and the
pages turn them into answers)."""

from __future__ import annotations

from typing import Any

from deploys import rules


class DeployRequestError(Exception):
    """A deploy request that cannot be accepted; ``field`` names the culprit."""

    status = 400
    code = "invalid"

    def __init__(
        self, message: str, *, field: str = "", extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # More facts for the API's answer (a rule's name, where to deploy first).
        self.extra = extra or {}


class IdempotencyMismatch(DeployRequestError):
    status = 422
    code = "idempotency_key_reused"


class IdempotencyInProgress(DeployRequestError):
    status = 409
    code = "idempotency_key_in_progress"


class BreakGlassForbidden(DeployRequestError):
    status = 403
    code = "break_glass_forbidden"


class GitHubUnreachable(DeployRequestError):
    """GitHub did not answer the ref's resolution; nothing was created."""

    status = 503
    code = "github_unavailable"


class RuleRefused(DeployRequestError):
    """A deploy rule (promotion, allowed refs: ``deploys.rules``) refuses the ref or
    commit; ``code`` is the first rule's (``not_promoted``, ``ref_not_allowed``)."""

    def __init__(self, refusals: list[rules.Refusal]) -> None:
        first = refusals[0]
        super().__init__(
            " ".join(r.message for r in refusals)
            + " An admin may break glass with a reason.",
            field=first.field,
            extra={"rules": [r.detail() for r in refusals]},
        )
        self.code = first.code
        self.refusals = refusals


class JiraUnreachable(DeployRequestError):
    """JIRA could not confirm the change ticket; nothing was created."""

    status = 503
    code = "jira_unavailable"


class DeployRefused(DeployRequestError):
    """The environment's safeguards refuse a deploy now (paused, one in progress)."""

    status = 409
    code = "refused"
