"""What the hosts' agents report: heartbeats as they fall due, node_exporter pages."""

from __future__ import annotations

import heapq

from githubsim.hosts import Heartbeat, exporter_text, heartbeat_body
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
                following = max(at + interval, now)
                self._heartbeat_due[runner_id] = following
                heapq.heappush(heap, (following, runner_id))
                runner = self._runners[runner_id]
                if not (runner.alive and runner.heartbeats and runner.heartbeat_token):
                    continue
                due.append(
                    Heartbeat(
                        runner.name, runner.heartbeat_token, heartbeat_body(runner, now)
                    )
                )
            return due

    def exporter_metrics(self, name: str) -> str | None:
        """node_exporter text for a runner's host; None when the host is down."""
        with self.lock:
            runner = self.runner(name)
            if not runner.alive:
                return None
            return exporter_text(runner, self.clock.now())
