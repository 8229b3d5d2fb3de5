"""Custom deployment protection rules: GitHub Apps that approve or reject deployments.

An environment may enable custom rules, each naming a GitHub App (``integration_id``).
A job declaring that environment is held ``waiting`` until every such App has approved
it: GitHub sends each App's webhook a ``deployment_protection_rule`` event (action
``requested``) carrying a ``deployment_callback_url``, and the App answers
``POST /repos/{o}/{r}/actions/runs/{run_id}/deployment_protection_rule`` with
``environment_name``, ``state`` and a ``comment``, authenticated as the App's
installation (an installation token): an App can review only its own rules. A rejection
fails the job; an approval releases it once the other rules (reviewers, a wait timer)
passed too.

The simulator delivers the App's events through the same webhook sink as the
repository's (one receiver stands for both), and knows the Apps registered through the
control API (``PUT /_sim/apps/{app_id}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from githubsim import shapes
from githubsim.errors import ApiError, invalid, not_found
from githubsim.models import Job
from githubsim.state.environment_shapes import CustomRule, Hold
from githubsim.state.environments import EnvironmentsMixin


@dataclass
class App:
    """A GitHub App installed on the simulated organization."""

    id: int
    slug: str
    installation_id: int


class ProtectionRulesMixin(EnvironmentsMixin):
    """Apps, their rules on environments, the requests sent and the reviews received."""

    def _reset_environments(self) -> None:
        super()._reset_environments()
        self._apps: dict[int, App] = {}
        self._next_rule_id = 3_500_001
        # Reviews by run id: (environment, app id, state, comment, asked, answered),
        # oldest first; when each App was asked, by (run id, app id).
        self._gate_reviews: dict[
            int, list[tuple[str, int, str, str, float | None, float]]
        ] = {}
        self._gate_asked: dict[tuple[int, int], float] = {}

    # Apps and rules ---------------------------------------------------------------------

    def register_app(self, app_id: int, slug: str, installation_id: int) -> App:
        with self.lock:
            app = App(app_id, slug, installation_id)
            self._apps[app_id] = app
            return app

    def apps(self) -> list[App]:
        with self.lock:
            return sorted(self._apps.values(), key=lambda a: a.id)

    def custom_rules(self, full_name: str, environment: str) -> list[CustomRule]:
        with self.lock:
            return list(self.get_environment(full_name, environment).custom_rules)

    def add_custom_rule(
        self, full_name: str, environment: str, integration_id: Any
    ) -> CustomRule:
        with self.lock:
            if not isinstance(integration_id, int) or isinstance(integration_id, bool):
                raise invalid("integration_id must be an integer", "integration_id")
            if integration_id not in self._apps:
                raise ApiError(
                    422,
                    f"Integration {integration_id} is not installed on this "
                    "repository or does not provide deployment protection rules",
                )
            env = self.get_environment(full_name, environment)
            if any(rule.app_id == integration_id for rule in env.custom_rules):
                raise ApiError(
                    422,
                    f"Integration {integration_id} already has a deployment "
                    f"protection rule on environment {env.name!r}",
                )
            rule = CustomRule(self._next_rule_id, integration_id)
            self._next_rule_id += 1
            env.custom_rules.append(rule)
            env.updated_at = self.clock.now()
            return rule

    def get_custom_rule(
        self, full_name: str, environment: str, rule_id: int
    ) -> CustomRule:
        with self.lock:
            env = self.get_environment(full_name, environment)
            for rule in env.custom_rules:
                if rule.id == rule_id:
                    return rule
            raise not_found()

    def delete_custom_rule(
        self, full_name: str, environment: str, rule_id: int
    ) -> None:
        with self.lock:
            env = self.get_environment(full_name, environment)
            rule = self.get_custom_rule(full_name, environment, rule_id)
            env.custom_rules.remove(rule)
            env.updated_at = self.clock.now()

    # The job side -----------------------------------------------------------------------

    def _held(self, job: Job, environment: str | None, now: float) -> bool:
        held = super()._held(job, environment, now)
        hold = self._holds.get(job.id) if held else None
        if hold is not None:
            for app_id in sorted(hold.pending_apps):
                self._request_review(hold, app_id)
        return held

    def _request_review(self, hold: Hold, app_id: int) -> None:
        """Send the App its ``deployment_protection_rule`` event for this hold."""
        self._gate_asked[(hold.run_id, app_id)] = self.clock.now()
        if self.webhook_sink is None:
            return
        base = self.public_url
        run = self._runs[hold.run_id]
        app = self._apps.get(app_id)
        payload: dict[str, Any] = {
            "action": "requested",
            "environment": hold.environment,
            "event": run.event,
            "deployment_callback_url": (
                f"{base}/repos/{run.repository}/actions/runs/{run.id}"
                "/deployment_protection_rule"
            ),
            "deployment": self.deployment_json(
                base, self._deployments[hold.deployment_id]
            ),
            "pull_requests": [],
            "repository": self.repository_json(base, run.repository),
            "organization": self.organization_json(base, run.repository),
            "sender": self.actor(base),
        }
        if app is not None:
            payload["installation"] = {
                "id": app.installation_id,
                "node_id": shapes.node_id("023:Installation", app.installation_id),
            }
        self.webhook_sink("deployment_protection_rule", payload)

    def review_custom_rule(
        self,
        full_name: str,
        run_id: int,
        token: str,
        environment: str,
        state: str,
        comment: str,
    ) -> None:
        """An App approves or rejects its rule for the run's jobs waiting on
        ``environment``."""
        with self.lock:
            run = self.get_run(full_name, run_id)
            app_id = self.limits.app_of_token(token)
            if app_id is None:
                raise ApiError(
                    403,
                    "Resource not accessible by integration: only a GitHub App can "
                    "review its own custom deployment protection rules",
                )
            holds = [
                h
                for h in self._holds.values()
                if h.run_id == run.id
                and h.environment.casefold() == environment.casefold()
                and app_id in h.pending_apps
            ]
            if not holds:
                raise invalid(
                    f"Run {run.id} has no deployment waiting for a custom protection "
                    f"rule of app {app_id} in environment {environment!r}",
                    "environment_name",
                )
            now = self.clock.now()
            asked = self._gate_asked.get((run.id, app_id))
            self._gate_reviews.setdefault(run.id, []).append(
                (holds[0].environment, app_id, state, comment, asked, now)
            )
            app = self._apps.get(app_id)
            slug = app.slug if app else f"app {app_id}"
            for hold in holds:
                if state == "approved":
                    hold.pending_apps.discard(app_id)
                    if hold.ready:
                        self._pass_hold(hold, now)
                else:
                    self._reject_hold(hold, f"rejected by {slug}", comment, now)

    def gate_reviews(self, run_id: int) -> list[dict[str, Any]]:
        """What the Apps answered for a run, oldest first (for the control API)."""
        with self.lock:
            return [
                {
                    "environment": env,
                    "app_id": app,
                    "state": state,
                    "comment": comment,
                    # Simulated-clock seconds: when GitHub asked, when the App answered.
                    "asked_at": asked,
                    "answered_at": answered,
                }
                for env, app, state, comment, asked, answered in self._gate_reviews.get(
                    run_id, []
                )
            ]

    # Shapes -----------------------------------------------------------------------------

    def app_json(self, base: str, app_id: int) -> dict[str, Any]:
        app = self._apps.get(app_id)
        slug = app.slug if app else f"app-{app_id}"
        return {
            "id": app_id,
            "node_id": shapes.node_id("03:Integration", app_id),
            "slug": slug,
            "integration_url": f"{base}/apps/{slug}",
        }

    def rule_json(self, base: str, rule: CustomRule) -> dict[str, Any]:
        return {
            "id": rule.id,
            "node_id": shapes.node_id("04:Gate", rule.id),
            "enabled": rule.enabled,
            "app": self.app_json(base, rule.app_id),
        }
