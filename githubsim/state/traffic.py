"""CI traffic: other workflows' jobs that keep self-hosted runners busy.

Deploys share runners with everything else a repository runs. Traffic runs belong to a
``ci.yml`` workflow of their own (so a deploy's run look-ups never see them) and run on
chosen runners, or on any runners with chosen labels, until stopped or for a duration.
"""

from __future__ import annotations

from githubsim.errors import ApiError
from githubsim.models import JobSpec, Run
from githubsim.state.runs import RunsMixin

TRAFFIC_WORKFLOW = "ci.yml"
# A traffic job without a duration runs until the traffic is stopped.
UNTIL_STOPPED = 10 * 365 * 86400.0
MAX_TRAFFIC_JOBS = 1000


class TrafficMixin(RunsMixin):
    """Starting and stopping background CI jobs."""

    def start_traffic(
        self,
        full_name: str,
        *,
        runners: list[str] | None = None,
        labels: list[str] | None = None,
        count: int = 1,
        duration: float | None = None,
    ) -> Run:
        """One CI run with a job per named runner, or ``count`` jobs on ``labels``."""
        with self.lock:
            seconds = UNTIL_STOPPED if duration is None else duration
            if runners:
                for name in runners:
                    self.runner(name)  # 404 for a runner that does not exist
                specs = [
                    JobSpec(f"ci-{n}", ["self-hosted", name], duration=seconds)
                    for n, name in enumerate(runners, 1)
                ]
            elif labels:
                if not 1 <= count <= MAX_TRAFFIC_JOBS:
                    raise ApiError(422, f"count must be 1 to {MAX_TRAFFIC_JOBS}")
                specs = [
                    JobSpec(f"ci-{n}", ["self-hosted", *labels], duration=seconds)
                    for n in range(1, count + 1)
                ]
            else:
                raise ApiError(422, "give runners: [names] or labels: [labels]")
            flow = self.set_workflow(full_name, TRAFFIC_WORKFLOW, specs, "CI")
            return self._create_run(flow, "main", {}, "CI", specs, traffic=True)

    def stop_traffic(self) -> int:
        """Finish every traffic job: running ones succeed, queued ones are cancelled."""
        with self.lock:
            now = self.clock.now()
            stopped = 0
            for run in list(self._runs.values()):
                if not run.traffic or run.status == "completed":
                    continue
                stopped += 1
                run.blocked.clear()
                for job in self.run_jobs(run):
                    if job.status == "in_progress":
                        self._complete(job, "success", now)
                    elif job.active:
                        self._complete(job, "cancelled", now)
            return stopped
