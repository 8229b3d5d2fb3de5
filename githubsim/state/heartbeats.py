"""What the hosts' agents report: heartbeats as they fall due, node_exporter pages."""

from __future__ import annotations

import heapq

from githubsim.hosts import Heartbeat, exporter_text, heartbeat_body
from githubsim.models import Runner
from githubsim.state.runners import RunnersMixin


class HeartbeatsMixin(RunnersMixin):
    """Reads the fleet's heartbeat schedule; the sender counts what it delivered."""

    def _reset_heartbeats(self) -> None:
        self.heartbeats_sent = 0
        self.heartbeats_failed = 0

    def due_heartbeats(self) -> list[Heartbeat]:
        """Heartbeats due now from live hosts whose agent runs and has a token."""
        with self.lock:
            now = self.clock.now()
            interval = self.config.heartbeat_interval
            due: list[Heartbeat] = []
            heap = self._heartbeat_heap
            while heap and heap[0][0] <= now:
                at, runner_id = heapq.heappop(heap)
                if self._heartbeat_due.get(runner_id) != at:
                    continue
                runner = self._runners[runner_id]
                follows = runner.heartbeat_follows_interval
                every = (follows and runner.heartbeat_interval) or interval
                following = max(at + every, now)
                self._heartbeat_due[runner_id] = following
                heapq.heappush(heap, (following, runner_id))
                if not (runner.alive and runner.heartbeats and runner.heartbeat_token):
                    continue
                due.append(
                    Heartbeat(
                        runner.name,
                        runner.heartbeat_token,
                        heartbeat_body(runner, now),
                        at=at,
                        follows_interval=follows,
                    )
                )
            return due

    def heartbeat_answered(self, beat: Heartbeat, interval: float | None) -> None:
        """The control plane answered ``beat`` with the next ``interval``: an agent
        that follows it sends its next heartbeat that long after this one.

        The control plane counts real seconds (its deadlines are on its own clock),
        so on a sped-up simulator the interval is that many real seconds."""
        if interval is not None:
            interval *= self.clock.time_scale
        with self.lock:
            runner_id = self._by_name.get(beat.runner_name)
            runner = None if runner_id is None else self._runners[runner_id]
            if runner is None or not runner.heartbeat_follows_interval:
                return
            runner.heartbeat_interval = interval
            if interval is None or runner.id not in self._heartbeat_due:
                return
            following = max(beat.at + interval, self.clock.now())
            if following != self._heartbeat_due[runner.id]:
                self._heartbeat_due[runner.id] = following
                heapq.heappush(self._heartbeat_heap, (following, runner.id))

    def set_heartbeat_agent(self, name: str, follows_interval: bool) -> Runner:
        """Run an agent that follows the answered interval, or an older one."""
        with self.lock:
            runner = self.runner(name)
            runner.heartbeat_follows_interval = follows_interval
            if not follows_interval:
                runner.heartbeat_interval = None
            return runner

    def exporter_metrics(self, name: str) -> str | None:
        """node_exporter text for a runner's host; None when the host is down."""
        with self.lock:
            runner = self.runner(name)
            if not runner.alive:
                return None
            return exporter_text(runner, self.clock.now())
