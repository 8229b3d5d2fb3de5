"""What every part of the simulated GitHub shares: the lock, clock, settings, repositories.

:class:`StateCore` is the base of the resource mixins that :class:`~githubsim.state.SimState`
composes; it declares the attributes ``SimState.__init__`` sets so each mixin is typed on its
own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from random import Random
from typing import Any

from githubsim import shapes
from githubsim.clock import SimClock
from githubsim.errors import not_found
from githubsim.limits import Limits
from githubsim.models import Config, Faults, JobSpec, Workflow, WorkflowInput

WebhookSink = Callable[[str, dict[str, Any]], None]

ACTOR_LOGIN = "deploy-bot"
ACTOR_ID = 9_000_001


class StateCore:
    """Shared state and the repositories, organizations and workflows runs belong to."""

    lock: threading.RLock
    clock: SimClock
    config: Config
    faults: Faults
    random: Random
    limits: Limits
    default_repository: str
    # Base URL used in webhook payloads, where no request tells the host.
    public_url: str
    webhook_sink: WebhookSink | None
    # Bumped when the runner list changes; cached runner pages compare against it.
    version: int
    repositories: dict[str, int]
    organizations: dict[str, int]
    workflows: dict[int, Workflow]

    def _reset_repositories(self) -> None:
        self.version = 0
        self.repositories = {}
        self.organizations = {}
        self.workflows = {}

    def _bump(self) -> None:
        self.version += 1

    def add_repository(self, full_name: str, workflow_file: str = "deploy.yml") -> None:
        """Create a repository (and its owner organization) with one dispatchable workflow."""
        with self.lock:
            if full_name in self.repositories:
                return
            owner = full_name.split("/", 1)[0]
            self.organizations.setdefault(
                owner, 8_000_000 + len(self.organizations) + 1
            )
            self.repositories[full_name] = 7_000_000 + len(self.repositories) + 1
            workflow_id = 6_000_000 + len(self.workflows) + 1
            self.workflows[workflow_id] = Workflow(
                workflow_id,
                full_name,
                f".github/workflows/{workflow_file}",
                "Deploy",
                shapes.EPOCH_2020,
            )

    def set_workflow(
        self,
        full_name: str,
        workflow_file: str,
        jobs: list[JobSpec],
        name: str | None = None,
        inputs: list[WorkflowInput] | None = None,
    ) -> Workflow:
        """Define a workflow's jobs and the inputs its file declares (later runs and
        dispatches use them), adding the file if new."""
        with self.lock:
            self.repository_id(full_name)
            file = workflow_file.rsplit("/", 1)[-1]
            for flow in self.workflows.values():
                if flow.repository == full_name and flow.path.endswith("/" + file):
                    break
            else:
                workflow_id = 6_000_000 + len(self.workflows) + 1
                flow = Workflow(
                    workflow_id,
                    full_name,
                    f".github/workflows/{file}",
                    name or file.rsplit(".", 1)[0],
                    shapes.EPOCH_2020,
                )
                self.workflows[workflow_id] = flow
            flow.jobs = list(jobs)
            flow.inputs = None if inputs is None else list(inputs)
            if name:
                flow.name = name
            return flow

    def repository_id(self, full_name: str) -> int:
        try:
            return self.repositories[full_name]
        except KeyError:
            raise not_found() from None

    def workflow(self, full_name: str, workflow_ref: str) -> Workflow:
        self.repository_id(full_name)
        for flow in self.workflows.values():
            if flow.repository != full_name:
                continue
            if workflow_ref in (str(flow.id), flow.path, flow.path.rsplit("/", 1)[-1]):
                return flow
        raise not_found()

    # Payload parts every event carries ---------------------------------------------------

    def actor(self, base: str) -> dict[str, Any]:
        return shapes.user(base, ACTOR_LOGIN, ACTOR_ID, "Bot")

    def repository_json(self, base: str, full_name: str) -> dict[str, Any]:
        owner = full_name.split("/", 1)[0]
        return shapes.repository(
            base, full_name, self.repository_id(full_name), self.organizations[owner]
        )
