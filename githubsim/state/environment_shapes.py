"""The records of GitHub environments and deployments, the users who review them, and
their JSON shapes (REST answers and webhook payloads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from githubsim import shapes
from githubsim.clock import isoformat
from githubsim.limits import digest
from githubsim.state.core import ACTOR_ID, StateCore


@dataclass
class Environment:
    """A repository's deployment environment and its protection rules."""

    id: int
    repository: str
    name: str
    created_at: float
    updated_at: float
    wait_timer: int = 0  # minutes
    reviewer_ids: list[int] = field(default_factory=list)  # user ids
    prevent_self_review: bool = False
    # Custom deployment protection rules: the GitHub Apps that must approve.
    custom_rules: list[CustomRule] = field(default_factory=list)

    @property
    def rule_apps(self) -> set[int]:
        return {rule.app_id for rule in self.custom_rules if rule.enabled}

    @property
    def protected(self) -> bool:
        return bool(self.wait_timer or self.reviewer_ids or self.rule_apps)


@dataclass
class CustomRule:
    """A custom deployment protection rule: a GitHub App enabled on an environment."""

    id: int
    app_id: int
    enabled: bool = True


@dataclass
class DeploymentStatus:
    id: int
    state: str
    description: str
    created_at: float


@dataclass
class Deployment:
    """The deployment GitHub records for a job that declares an environment."""

    id: int
    repository: str
    environment: str
    ref: str
    sha: str
    run_id: int
    job_id: int
    created_at: float
    updated_at: float
    statuses: list[DeploymentStatus] = field(default_factory=list)
    # The job status the last deployment status reflects; "done" once final.
    seen: str = ""


@dataclass
class Hold:
    """A job held by its environment's protection rules."""

    job_id: int
    run_id: int
    environment: str
    deployment_id: int
    started_at: float
    wait_until: float | None
    needs_review: bool
    # The GitHub Apps whose custom protection rules have not approved yet.
    pending_apps: set[int] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        """Every protection rule passed: the job may be queued."""
        return (
            not self.needs_review and self.wait_until is None and not self.pending_apps
        )


class EnvironmentShapesMixin(StateCore):
    """Users by id (and by token), and the JSON of environments and deployments."""

    _users: dict[int, str]
    _token_users: dict[str, int]

    # Users ----------------------------------------------------------------------------

    def add_user(self, login: str, token: str = "") -> int:
        """A GitHub user (for reviewers); ``token`` authenticates as that user."""
        with self.lock:
            user_id = next((i for i, n in self._users.items() if n == login), None)
            if user_id is None:
                user_id = ACTOR_ID + 1000 + len(self._users)
                self._users[user_id] = login
            if token:
                self._token_users[digest(token)] = user_id
            return user_id

    def user_of_token(self, token: str) -> int:
        return self._token_users.get(digest(token), ACTOR_ID)

    def user_json(self, base: str, user_id: int) -> dict[str, Any]:
        kind = "Bot" if user_id == ACTOR_ID else "User"
        return shapes.user(base, self._users[user_id], user_id, kind)

    # Shapes ---------------------------------------------------------------------------

    def environment_json(self, base: str, env: Environment) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        if env.wait_timer:
            rules.append(
                {
                    "id": env.id * 10 + 1,
                    "node_id": shapes.node_id("04:Gate", env.id * 10 + 1),
                    "type": "wait_timer",
                    "wait_timer": env.wait_timer,
                }
            )
        if env.reviewer_ids:
            rules.append(
                {
                    "id": env.id * 10 + 2,
                    "node_id": shapes.node_id("04:Gate", env.id * 10 + 2),
                    "type": "required_reviewers",
                    "prevent_self_review": env.prevent_self_review,
                    "reviewers": self._reviewers_json(base, env),
                }
            )
        return {
            **self._environment_ref(base, env),
            "created_at": isoformat(env.created_at),
            "updated_at": isoformat(env.updated_at),
            "protection_rules": rules,
            "deployment_branch_policy": None,
        }

    def _environment_ref(self, base: str, env: Environment) -> dict[str, Any]:
        return {
            "id": env.id,
            "node_id": shapes.node_id("011:Environment", env.id),
            "name": env.name,
            "url": f"{base}/repos/{env.repository}/environments/{env.name}",
            "html_url": f"{base}/{env.repository}/deployments/activity_log"
            f"?environments_filter={env.name}",
        }

    def _reviewers_json(self, base: str, env: Environment) -> list[dict[str, Any]]:
        return [
            {"type": "User", "reviewer": self.user_json(base, user_id)}
            for user_id in env.reviewer_ids
        ]

    def deployment_json(self, base: str, deployment: Deployment) -> dict[str, Any]:
        url = f"{base}/repos/{deployment.repository}/deployments/{deployment.id}"
        return {
            "url": url,
            "id": deployment.id,
            "node_id": shapes.node_id("010:Deployment", deployment.id),
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": "deploy",
            "payload": {},
            "original_environment": deployment.environment,
            "environment": deployment.environment,
            "description": None,
            "creator": self.actor(base),
            "created_at": isoformat(deployment.created_at),
            "updated_at": isoformat(deployment.updated_at),
            "statuses_url": f"{url}/statuses",
            "repository_url": f"{base}/repos/{deployment.repository}",
            "transient_environment": False,
            "production_environment": deployment.environment.casefold() == "production",
            "performed_via_github_app": None,
        }

    def status_json(
        self, base: str, deployment: Deployment, status: DeploymentStatus
    ) -> dict[str, Any]:
        url = f"{base}/repos/{deployment.repository}/deployments/{deployment.id}"
        log_url = f"{base}/{deployment.repository}/actions/runs/{deployment.run_id}"
        return {
            "url": f"{url}/statuses/{status.id}",
            "id": status.id,
            "node_id": shapes.node_id("016:DeploymentStatus", status.id),
            "state": status.state,
            "creator": self.actor(base),
            "description": status.description,
            "environment": deployment.environment,
            "target_url": log_url,
            "log_url": log_url,
            "environment_url": "",
            "created_at": isoformat(status.created_at),
            "updated_at": isoformat(status.created_at),
            "deployment_url": url,
            "repository_url": f"{base}/repos/{deployment.repository}",
            "performed_via_github_app": None,
        }

    def organization_json(self, base: str, full_name: str) -> dict[str, Any]:
        org = full_name.split("/", 1)[0]
        org_id = self.organizations[org]
        url = f"{base}/orgs/{org}"
        return {
            "login": org,
            "id": org_id,
            "node_id": shapes.node_id("012:Organization", org_id),
            "url": url,
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events",
            "hooks_url": f"{url}/hooks",
            "issues_url": f"{url}/issues",
            "members_url": f"{url}/members{{/member}}",
            "public_members_url": f"{url}/public_members{{/member}}",
            "avatar_url": f"{base}/avatars/{org}",
            "description": None,
        }
