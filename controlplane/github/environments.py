"""GitHub environments' protection rules as a workflow run meets them: what a run's
jobs wait for (pending deployments) and a review that approves or rejects them."""

from __future__ import annotations

from typing import Any

from controlplane.github.core import GatewayCore
from controlplane.github.errors import GitHubValidationError
from controlplane.github.types import PendingDeployment, Review, parse_time

REVIEW_STATES = ("approved", "rejected")


def parse_pending(data: dict[str, Any]) -> PendingDeployment:
    env = data.get("environment") or {}
    return PendingDeployment(
        environment_id=int(env.get("id") or 0),
        environment=str(env.get("name") or ""),
        wait_timer=int(data.get("wait_timer") or 0),
        wait_timer_started_at=parse_time(data.get("wait_timer_started_at")),
        current_user_can_approve=bool(data.get("current_user_can_approve")),
        reviewers=tuple(
            str((item.get("reviewer") or {}).get("login") or "")
            or str((item.get("reviewer") or {}).get("slug") or "")
            for item in data.get("reviewers") or ()
        ),
    )


class EnvironmentCalls(GatewayCore):
    def pending_deployments(self, run_id: int) -> list[PendingDeployment]:
        """What the run's waiting jobs wait for, one entry per environment."""
        url = f"{self._repo_url}/actions/runs/{int(run_id)}/pending_deployments"
        data = self._get("pending_deployments", url)
        return [parse_pending(item) for item in data or ()]

    def run_reviews(self, run_id: int) -> list[Review]:
        """Who approved or rejected the run's deployments, oldest first."""
        url = f"{self._repo_url}/actions/runs/{int(run_id)}/approvals"
        return [
            Review(
                state=str(item.get("state") or ""),
                user=str((item.get("user") or {}).get("login") or ""),
                comment=str(item.get("comment") or ""),
                environments=tuple(
                    str(e.get("name") or "") for e in item.get("environments") or ()
                ),
            )
            for item in self._get("run_reviews", url) or ()
        ]

    def review_pending_deployments(
        self, run_id: int, environment_ids: list[int], state: str, comment: str
    ) -> None:
        """Approve or reject the run's jobs waiting for these environments, as the
        gateway's GitHub user (GitHub answers 422 when that user may not review)."""
        if state not in REVIEW_STATES:
            raise GitHubValidationError(f"review state must be one of {REVIEW_STATES}")
        url = f"{self._repo_url}/actions/runs/{int(run_id)}/pending_deployments"
        body = {
            "environment_ids": [int(i) for i in environment_ids],
            "state": state,
            "comment": comment,
        }
        self._post("review_pending_deployments", url, body)

    def review_custom_gate(
        self, run_id: int, environment: str, state: str, comment: str
    ) -> None:
        """Answer GitHub as a custom deployment protection rule: approve or reject
        the run's jobs waiting on ``environment``. Only a GitHub App's installation
        may (GitHub answers 403 to any other token, 422 when nothing waits)."""
        if state not in REVIEW_STATES:
            raise GitHubValidationError(f"review state must be one of {REVIEW_STATES}")
        url = f"{self._repo_url}/actions/runs/{int(run_id)}/deployment_protection_rule"
        body = {"environment_name": environment, "state": state, "comment": comment}
        self._post("review_custom_gate", url, body)
