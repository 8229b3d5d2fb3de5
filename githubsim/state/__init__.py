"""Everything the simulated GitHub knows, behind one lock.

The HTTP server, the scheduler thread, the webhook and heartbeat senders and tests all go
through :class:`SimState`. It is composed of one mixin per resource, each in its own module:
:mod:`~githubsim.state.runners` (the fleet and its hosts),
:mod:`~githubsim.state.releases` (the runner application's downloads), :mod:`~githubsim.state.runs` (runs
and their jobs' ``needs``) on :mod:`~githubsim.state.scheduling` (jobs on runners),
:mod:`~githubsim.state.traffic` (CI jobs keeping runners busy),
:mod:`~githubsim.state.environments` (environments, protection rules, deployments),
:mod:`~githubsim.state.secrets`, :mod:`~githubsim.state.hooks` (the
webhook's delivery log), :mod:`~githubsim.state.faults` (faults, settings, request counts)
and :mod:`~githubsim.state.heartbeats`, on the shared :mod:`~githubsim.state.core`. A new
resource is a new mixin here. Lookups are dictionary-based so a 10,000-runner fleet costs
nothing per request beyond the page being answered.
"""

from __future__ import annotations

import threading
from collections import Counter
from random import Random
from typing import Any

from githubsim.clock import SimClock, isoformat
from githubsim.limits import Limits
from githubsim.models import Config, Faults
from githubsim.secretstore import (
    environment_scope,
    organization_scope,
    repository_scope,
)
from githubsim.state.faults import FaultsMixin
from githubsim.state.heartbeats import HeartbeatsMixin
from githubsim.state.hooks import HooksMixin
from githubsim.state.protection_rules import ProtectionRulesMixin
from githubsim.state.releases import ReleasesMixin
from githubsim.state.secrets import SecretsMixin
from githubsim.state.traffic import TrafficMixin

__all__ = ["SimState"]


class SimState(
    ProtectionRulesMixin,
    TrafficMixin,
    HeartbeatsMixin,
    ReleasesMixin,
    SecretsMixin,
    HooksMixin,
    FaultsMixin,
):
    """The simulated GitHub: repositories, commits, runners, runs, jobs, environments,
    deployments, secrets and limits."""

    def __init__(
        self,
        clock: SimClock,
        *,
        config: Config | None = None,
        seed: int | None = None,
        repository: str = "acme/deploy",
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.config = config or Config()
        self.faults = Faults()
        self.random = Random(seed)
        self.limits = Limits(self.lock, clock, self.config, self.random)
        self.default_repository = repository
        self.public_url = "http://127.0.0.1"
        self.webhook_sink = None
        self._reset_data()

    def _reset_data(self) -> None:
        self._reset_repositories()
        self._reset_commits()
        self._reset_runners()
        self._reset_runs()
        self._reset_environments()
        self._reset_secrets()
        self._reset_hooks()
        self._reset_heartbeats()
        self.limits.reset()
        self.add_repository(self.default_repository)

    def reset(self) -> None:
        """Forget runners, runs, secrets, faults, budgets and counters; keep the config."""
        with self.lock:
            self.faults = Faults()
            self._reset_data()

    def load_demo(self) -> None:
        """A small fleet, the ``acme/deploy`` repository and a few secrets."""
        with self.lock:
            repo = self.default_repository
            self.add_runner("prod-primary-1", ["production", "primary"])
            self.add_runner("prod-secondary-1", ["production", "secondary"])
            self.add_runner("prod-secondary-2", ["production", "secondary"])
            self.add_runner("staging-1", ["staging"])
            self.add_runner("staging-2", ["staging"])
            self.add_runner("build-1", ["build"])
            self.add_runner("build-2", ["build"])
            self.add_runner("canary-1", ["canary"], arch="ARM64")
            now = self.clock.now()
            self.set_secret(repository_scope(repo), "DEPLOY_KEY", "demo-deploy-key")
            self.set_secret(repository_scope(repo), "REGISTRY_TOKEN", "demo-registry")
            self.set_secret(
                environment_scope(repo, "production"), "PROD_DB_PASSWORD", "demo-db"
            )
            self.set_secret(
                environment_scope(repo, "staging"), "STAGING_DB_PASSWORD", "demo-db"
            )
            self.set_secret(
                organization_scope(repo.split("/")[0]),
                "SLACK_WEBHOOK",
                "demo-slack",
                visibility="private",
            )
            # Secrets last rotated long ago, so rotation schedules have work to show:
            # on a 90-day interval one is overdue and one due soon.
            store = self._store(repository_scope(repo))
            for name, days in (("REGISTRY_TOKEN", 120), ("DEPLOY_KEY", 80)):
                old = store.get(name)
                old.created_at = old.updated_at = now - days * 86400

    def tick(self) -> None:
        """Advance runners and jobs whose deadlines have passed (the scheduler thread)."""
        with self.lock:
            now = self.clock.now()
            self._mark_offline(now)
            self._advance_jobs(now)
            self._advance_environments(now)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            runners = self._runners.values()
            jobs = Counter(job.status for job in self._jobs.values())
            return {
                "time": isoformat(self.clock.now()),
                "time_scale": self.clock.time_scale,
                "runners": {
                    "total": len(self._runners),
                    "alive": sum(r.alive for r in runners),
                    "online": sum(r.status == "online" for r in runners),
                    "busy": sum(r.busy for r in runners),
                },
                "runs": len(self._runs),
                "jobs": {
                    "queued": jobs["queued"],
                    "in_progress": jobs["in_progress"],
                    "completed": jobs["completed"],
                },
                "webhooks": {
                    "sent": self.webhooks_sent,
                    "failed": self.webhooks_failed,
                },
                "heartbeats": {
                    "sent": self.heartbeats_sent,
                    "failed": self.heartbeats_failed,
                },
                "requests": self.limits.request_count(),
                "faults": self.faults.as_dict(),
                "config": self.config.as_dict(),
            }
