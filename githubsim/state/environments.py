"""GitHub environments, their protection rules, pending deployments and deployments.

A job that declares ``environment: NAME`` gets a deployment when it becomes ready. If the
environment has required reviewers or a wait timer the job is ``waiting`` instead of
``queued``: ``pending_deployments`` lists it, a reviewer approves or rejects it, and the
wait timer runs on the simulated clock. The job is queued for a runner once every rule
passed; a rejection fails it. Deployment statuses follow the job (waiting, queued,
in_progress, then success, failure or inactive) and each one is a ``deployment_status``
webhook; a success marks the environment's earlier successful deployments inactive.

Users: ``deploy-bot`` is whoever calls with an unknown token; the control API adds users
(and the token they call with) so tests can name reviewers other than the caller.
"""

from __future__ import annotations

from typing import Any

from githubsim import shapes
from githubsim.clock import isoformat
from githubsim.errors import invalid, not_found
from githubsim.models import Job, Run
from githubsim.state.core import ACTOR_ID, ACTOR_LOGIN
from githubsim.state.environment_shapes import (
    Deployment,
    DeploymentStatus,
    Environment,
    EnvironmentShapesMixin,
    Hold,
)
from githubsim.state.runs import RunsMixin
from githubsim.state.secrets import SecretsMixin

MAX_WAIT_TIMER = 43_200  # minutes: 30 days
MAX_REVIEWERS = 6


class EnvironmentsMixin(RunsMixin, SecretsMixin, EnvironmentShapesMixin):
    """Environments by repository and name, holds by job, deployments by id."""

    def _reset_environments(self) -> None:
        self._environments: dict[tuple[str, str], Environment] = {}
        self._deployments: dict[int, Deployment] = {}
        self._open_deployments: dict[int, Deployment] = {}
        self._job_deployments: dict[int, Deployment] = {}
        # Reviews by run id: (environment names, state, user id, comment).
        self._reviews: dict[int, list[tuple[list[str], str, int, str]]] = {}
        self._holds: dict[int, Hold] = {}
        # Jobs whose protection rules passed: the next release queues them.
        self._passed: set[int] = set()
        self._next_environment_id = 161_000_001
        self._next_deployment_id = 1_000_001
        self._next_status_id = 2_000_001
        self._users: dict[int, str] = {ACTOR_ID: ACTOR_LOGIN}
        self._token_users: dict[str, int] = {}

    # Environments ---------------------------------------------------------------------

    def _environment(self, full_name: str, name: str) -> Environment:
        """The environment, created on first use as GitHub does for a workflow's."""
        self.repository_id(full_name)
        env = self._environments.get((full_name, name.casefold()))
        if env is None:
            now = self.clock.now()
            env = Environment(self._next_environment_id, full_name, name, now, now)
            self._next_environment_id += 1
            self._environments[(full_name, name.casefold())] = env
        return env

    def _adopt_secret_environments(self, full_name: str) -> None:
        """Environments that have secrets exist, as on GitHub."""
        for scope in list(self._secret_stores):
            if scope[0] == "environment" and scope[1] == full_name:
                self._environment(full_name, str(scope[2]))

    def get_environment(self, full_name: str, name: str) -> Environment:
        with self.lock:
            self.repository_id(full_name)
            self._adopt_secret_environments(full_name)
            env = self._environments.get((full_name, name.casefold()))
            if env is None:
                raise not_found()
            return env

    def environments(self, full_name: str) -> list[Environment]:
        with self.lock:
            self.repository_id(full_name)
            self._adopt_secret_environments(full_name)
            return sorted(
                (e for e in self._environments.values() if e.repository == full_name),
                key=lambda e: e.name.casefold(),
            )

    def put_environment(
        self, full_name: str, name: str, body: dict[str, Any]
    ) -> Environment:
        """Create or update an environment from GitHub's PUT body."""
        unknown = set(body) - {
            "wait_timer",
            "reviewers",
            "prevent_self_review",
            "deployment_branch_policy",
        }
        if unknown:
            raise invalid(f"Unknown field(s): {', '.join(sorted(unknown))}", "body")
        if not name or len(name) > 255 or "/" in name:
            raise invalid("Invalid environment name", "environment_name")
        wait = body.get("wait_timer", None)
        if wait is not None and (
            isinstance(wait, bool)
            or not isinstance(wait, int)
            or not 0 <= wait <= MAX_WAIT_TIMER
        ):
            raise invalid(
                f"wait_timer must be an integer between 0 and {MAX_WAIT_TIMER}",
                "wait_timer",
            )
        reviewers = body.get("reviewers", None)
        with self.lock:
            ids = None if reviewers is None else self._reviewer_ids(reviewers)
            env = self._environment(full_name, name)
            if wait is not None:
                env.wait_timer = wait
            if ids is not None:
                env.reviewer_ids = ids
            if "prevent_self_review" in body:
                env.prevent_self_review = bool(body["prevent_self_review"])
            env.updated_at = self.clock.now()
            return env

    def _reviewer_ids(self, reviewers: Any) -> list[int]:
        if not isinstance(reviewers, list) or len(reviewers) > MAX_REVIEWERS:
            raise invalid(
                f"reviewers must be a list of at most {MAX_REVIEWERS} users or teams",
                "reviewers",
            )
        ids: list[int] = []
        for item in reviewers:
            if not isinstance(item, dict) or item.get("type") not in ("User", "Team"):
                raise invalid(
                    'each reviewer is {"type": "User" or "Team", "id": N}', "reviewers"
                )
            if item["type"] == "Team":
                raise invalid("team reviewers are not simulated", "reviewers")
            user_id = item.get("id")
            if not isinstance(user_id, int) or user_id not in self._users:
                raise invalid(f"reviewer {user_id!r} is not a user", "reviewers")
            ids.append(user_id)
        return ids

    # The job side: hold, release, deployments -----------------------------------------

    def _held(self, job: Job, environment: str | None, now: float) -> bool:
        """Called as the job becomes ready: record its deployment and hold it while
        its environment's protection rules have not passed (True: do not queue)."""
        if not environment:
            return False
        if job.id in self._passed:
            self._passed.discard(job.id)
            return False
        env = self._environment(self._runs[job.run_id].repository, environment)
        deployment = self._create_deployment(job, env, now)
        if not env.protected:
            self._add_status(deployment, "queued", "", now)
            deployment.seen = "queued"
            return False
        wait_until = now + env.wait_timer * 60 if env.wait_timer else None
        self._holds[job.id] = Hold(
            job.id,
            job.run_id,
            env.name,
            deployment.id,
            now,
            wait_until,
            bool(env.reviewer_ids),
            env.rule_apps,
        )
        job.status = "waiting"
        job.note = "waiting for " + " and ".join(
            part
            for part in (
                "required reviewers" if env.reviewer_ids else "",
                f"a {env.wait_timer}-minute wait timer" if env.wait_timer else "",
                "custom protection rules" if env.rule_apps else "",
            )
            if part
        )
        deployment.seen = "waiting"
        self._add_status(deployment, "waiting", job.note, now)
        self._emit_job("waiting", job)
        return True

    def _pass_hold(self, hold: Hold, now: float) -> None:
        self._holds.pop(hold.job_id, None)
        job = self._jobs[hold.job_id]
        if job.status != "waiting":
            return
        self._passed.add(job.id)
        job.note = ""
        self._release(job, now)

    def _advance_environments(self, now: float) -> None:
        """Let jobs whose wait timer ran out (and need no review) go on."""
        for hold in list(self._holds.values()):
            job = self._jobs[hold.job_id]
            if job.status == "completed":
                self._holds.pop(hold.job_id, None)
            elif hold.wait_until is not None and now >= hold.wait_until:
                hold.wait_until = None
                if hold.ready:
                    self._pass_hold(hold, now)

    def _emit_job(self, action: str, job: Job) -> None:
        """Every change of a job's status is also one of its deployment's."""
        super()._emit_job(action, job)
        deployment = self._job_deployments.get(job.id)
        if deployment is not None and deployment.id in self._open_deployments:
            self._follow_job(deployment, self.clock.now())

    def _follow_job(self, deployment: Deployment, now: float) -> None:
        job = self._jobs[deployment.job_id]
        if job.status == deployment.seen:
            return
        if job.status == "queued":
            self._add_status(deployment, "queued", "", now)
        elif job.status == "in_progress":
            self._add_status(deployment, "in_progress", "", now)
        elif job.status == "completed":
            if job.conclusion == "success":
                self._supersede(deployment, now)
                self._add_status(deployment, "success", "", now)
            elif job.conclusion == "failure":
                self._add_status(deployment, "failure", job.note[:140], now)
            else:
                self._add_status(
                    deployment, "inactive", f"the job was {job.conclusion}", now
                )
            self._open_deployments.pop(deployment.id, None)
        deployment.seen = job.status

    def _supersede(self, deployment: Deployment, now: float) -> None:
        """A new successful deployment makes the environment's earlier ones inactive."""
        for other in self._deployments.values():
            if (
                other.id != deployment.id
                and other.repository == deployment.repository
                and other.environment == deployment.environment
                and other.statuses
                and other.statuses[-1].state == "success"
            ):
                self._add_status(other, "inactive", "superseded", now)

    def _create_deployment(self, job: Job, env: Environment, now: float) -> Deployment:
        run = self._runs[job.run_id]
        deployment = Deployment(
            self._next_deployment_id,
            run.repository,
            env.name,
            run.ref,
            run.head_sha,
            run.id,
            job.id,
            now,
            now,
        )
        self._next_deployment_id += 1
        self._deployments[deployment.id] = deployment
        self._open_deployments[deployment.id] = deployment
        self._job_deployments[job.id] = deployment
        if self.webhook_sink is not None:
            base = self.public_url
            self.webhook_sink(
                "deployment",
                {
                    "action": "created",
                    "deployment": self.deployment_json(base, deployment),
                    "workflow": shapes.workflow(base, self.workflows[run.workflow_id]),
                    "workflow_run": self._webhook_run(base, run),
                    "repository": self.repository_json(base, run.repository),
                    "sender": self.actor(base),
                },
            )
        return deployment

    def _add_status(
        self, deployment: Deployment, state: str, description: str, now: float
    ) -> None:
        status = DeploymentStatus(self._next_status_id, state, description, now)
        self._next_status_id += 1
        deployment.statuses.append(status)
        deployment.updated_at = now
        if self.webhook_sink is not None:
            base = self.public_url
            self.webhook_sink(
                "deployment_status",
                {
                    "action": "created",
                    "deployment_status": self.status_json(base, deployment, status),
                    "deployment": self.deployment_json(base, deployment),
                    "workflow_run": self._webhook_run(
                        base, self._runs[deployment.run_id]
                    ),
                    "repository": self.repository_json(base, deployment.repository),
                    "sender": self.actor(base),
                },
            )

    # Pending deployments --------------------------------------------------------------

    def pending_deployments(self, full_name: str, run_id: int) -> list[Hold]:
        """One hold per environment the run's waiting jobs wait for."""
        with self.lock:
            self.get_run(full_name, run_id)
            seen: dict[str, Hold] = {}
            for hold in self._holds.values():
                if hold.run_id == run_id:
                    seen.setdefault(hold.environment.casefold(), hold)
            return list(seen.values())

    def review_pending(
        self,
        full_name: str,
        run_id: int,
        token: str,
        environment_ids: list[int],
        state: str,
        comment: str,
    ) -> list[Deployment]:
        """Approve or reject the run's jobs waiting for these environments."""
        with self.lock:
            run = self.get_run(full_name, run_id)
            user_id = self.user_of_token(token)
            holds = [h for h in self._holds.values() if h.run_id == run_id]
            chosen: list[Hold] = []
            for env_id in environment_ids:
                matched = [
                    h
                    for h in holds
                    if self._environment(full_name, h.environment).id == env_id
                ]
                if not matched or not matched[0].needs_review:
                    raise invalid(
                        f"Run {run_id} has no deployment waiting for review in "
                        f"environment {env_id}",
                        "environment_ids",
                    )
                env = self._environment(full_name, matched[0].environment)
                if user_id not in env.reviewer_ids:
                    raise invalid(
                        f"{self._users[user_id]} is not a required reviewer of "
                        f"environment {env.name!r} and cannot review its deployments",
                        "environment_ids",
                    )
                chosen.extend(matched)
            now = self.clock.now()
            deployments = [self._deployments[h.deployment_id] for h in chosen]
            self._emit_review(run.id, chosen, state, comment, user_id, now)
            names = sorted({h.environment for h in chosen})
            self._reviews.setdefault(run.id, []).append(
                (names, state, user_id, comment)
            )
            for hold in chosen:
                if state == "approved":
                    hold.needs_review = False
                    if hold.ready:
                        self._pass_hold(hold, now)
                else:
                    self._reject_hold(
                        hold, f"rejected by {self._users[user_id]}", comment, now
                    )
            return deployments

    def _reject_hold(self, hold: Hold, who: str, comment: str, now: float) -> None:
        """A rejection fails the held job (and its deployment)."""
        self._holds.pop(hold.job_id, None)
        job = self._jobs[hold.job_id]
        job.note = f"{who}: {comment}"[:200]
        self._complete(job, "failure", now)
        self._follow_job(self._deployments[hold.deployment_id], now)

    def approvals_json(self, base: str, full_name: str, run_id: int) -> list[Any]:
        """The run's review log (``GET .../runs/{run_id}/approvals``)."""
        with self.lock:
            self.get_run(full_name, run_id)
            return [
                {
                    "environments": [
                        {
                            **self._environment_ref(base, env),
                            "created_at": isoformat(env.created_at),
                            "updated_at": isoformat(env.updated_at),
                        }
                        for env in (self._environment(full_name, n) for n in names)
                    ],
                    "state": state,
                    "user": self.user_json(base, user_id),
                    "comment": comment,
                }
                for names, state, user_id, comment in self._reviews.get(run_id, [])
            ]

    def can_approve(self, hold: Hold, token: str) -> bool:
        env = self._environment(self._runs[hold.run_id].repository, hold.environment)
        return hold.needs_review and self.user_of_token(token) in env.reviewer_ids

    def _emit_review(
        self,
        run_id: int,
        holds: list[Hold],
        state: str,
        comment: str,
        user_id: int,
        now: float,
    ) -> None:
        if self.webhook_sink is None or not holds:
            return
        base = self.public_url
        run = self._runs[run_id]
        env = self._environment(run.repository, holds[0].environment)
        jobs = [self._jobs[h.job_id] for h in holds]
        self.webhook_sink(
            "deployment_review",
            {
                "action": state,
                "approver": self.user_json(base, user_id),
                "comment": comment,
                "since": isoformat(min(h.started_at for h in holds)),
                "reviewers": [
                    {"type": "User", "reviewer": self.user_json(base, i)}
                    for i in env.reviewer_ids
                ],
                "workflow_run": self._webhook_run(base, run),
                "workflow_job_runs": [
                    {
                        "id": job.id,
                        "name": None,
                        "status": job.status,
                        "conclusion": None,
                        "environment": env.name,
                        "html_url": f"{base}/{run.repository}/actions/runs/{run.id}"
                        f"/job/{job.id}",
                        "created_at": isoformat(job.created_at),
                        "updated_at": isoformat(now),
                    }
                    for job in jobs
                ],
                "repository": self.repository_json(base, run.repository),
                "organization": self.organization_json(base, run.repository),
                "sender": self.user_json(base, user_id),
            },
        )

    # Deployments ----------------------------------------------------------------------

    def deployments(self, full_name: str) -> list[Deployment]:
        """Deployments of a repository, newest first."""
        with self.lock:
            self.repository_id(full_name)
            return [
                d
                for d in reversed(self._deployments.values())
                if d.repository == full_name
            ]

    def get_deployment(self, full_name: str, deployment_id: int) -> Deployment:
        deployment = self._deployments.get(deployment_id)
        if deployment is None or deployment.repository != full_name:
            raise not_found()
        return deployment

    # Shapes ---------------------------------------------------------------------------

    def _webhook_run(self, base: str, run: Run) -> dict[str, Any]:
        """The run as deployment webhooks carry it: GitHub's "Deployment Workflow Run"
        has no head commit and no repository descriptions."""
        body = self.run_json(base, run)
        body["head_commit"] = None
        for key in ("repository", "head_repository"):
            body[key] = {**body[key], "description": None}
        return body

    def pending_json(self, base: str, hold: Hold, token: str) -> dict[str, Any]:
        env = self._environment(self._runs[hold.run_id].repository, hold.environment)
        return {
            "environment": self._environment_ref(base, env),
            "wait_timer": env.wait_timer,
            "wait_timer_started_at": (
                isoformat(hold.started_at) if env.wait_timer else None
            ),
            "current_user_can_approve": self.can_approve(hold, token),
            "reviewers": self._reviewers_json(base, env),
        }
