"""The fleet: registered runners, their labels, the hosts behind them and the runner list.

The scheduler (:mod:`githubsim.state.runs`) builds on this; when a host dies or its runner
is removed, the job it was running is handed to the scheduler through :meth:`_lose_job`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import zlib
from abc import abstractmethod
from collections.abc import Iterable
from typing import Any

from githubsim import shapes
from githubsim.errors import ApiError, invalid
from githubsim.models import Runner
from githubsim.state.core import StateCore


class RunnersMixin(StateCore):
    """Runners by id, name and label, host faults, and each host's heartbeat schedule."""

    def _reset_runners(self) -> None:
        self._runners: dict[int, Runner] = {}
        self._runner_ids: list[int] = []
        self._by_name: dict[str, int] = {}
        self._label_index: dict[str, set[int]] = {}
        self._custom_label_ids: dict[str, int] = {}
        self._next_runner_id = 1
        self._offline_pending: dict[int, float] = {}
        # When each host with a token sends next; the heap finds the due ones without
        # scanning the fleet (entries that no longer match the dict are stale).
        self._heartbeat_due: dict[int, float] = {}
        self._heartbeat_heap: list[tuple[float, int]] = []
        self._page_cache: dict[tuple[int, int], tuple[tuple[int, int], bytes, str]] = {}

    @abstractmethod
    def _lose_job(self, job_id: int, now: float, why: str) -> None:
        """The job loses contact with its runner (the scheduler decides what follows)."""

    def add_runner(
        self,
        name: str,
        labels: Iterable[str] = (),
        *,
        os: str = "Linux",
        arch: str = "X64",
    ) -> Runner:
        """Register a runner; its own name is one of its custom labels (deploys target it)."""
        with self.lock:
            if name in self._by_name:
                raise invalid(f"Runner {name} already exists", "name", "already_exists")
            custom = [label for label in dict.fromkeys([*labels, name]) if label]
            runner = Runner(
                id=self._next_runner_id,
                name=name,
                custom_labels=custom,
                os=os,
                arch=arch,
                booted_at=self.clock.now(),
            )
            self._next_runner_id += 1
            self._runners[runner.id] = runner
            self._runner_ids.append(runner.id)
            self._by_name[name] = runner.id
            for label in runner.labels:
                self._label_index.setdefault(label.casefold(), set()).add(runner.id)
            for label in custom:
                self._custom_label_ids.setdefault(
                    label, 100 + len(self._custom_label_ids)
                )
            self._bump()
            return runner

    def add_runners(
        self, count: int, prefix: str = "runner", labels: Iterable[str] = ()
    ) -> list[Runner]:
        """Add ``count`` runners named ``{prefix}-{n}``, numbering on from existing ones."""
        with self.lock:
            labels = list(labels)
            added: list[Runner] = []
            number = 1
            while len(added) < count:
                name = f"{prefix}-{number}"
                number += 1
                if name not in self._by_name:
                    added.append(self.add_runner(name, labels))
            return added

    def runner(self, name_or_id: str | int) -> Runner:
        with self.lock:
            if isinstance(name_or_id, str) and name_or_id in self._by_name:
                return self._runners[self._by_name[name_or_id]]
            try:
                return self._runners[int(name_or_id)]
            except (KeyError, ValueError):
                raise ApiError(404, f"No runner named {name_or_id}") from None

    def find_runner(self, name: str) -> Runner | None:
        with self.lock:
            runner_id = self._by_name.get(name)
            return None if runner_id is None else self._runners[runner_id]

    def runners(self) -> list[Runner]:
        with self.lock:
            return [self._runners[i] for i in self._runner_ids]

    def remove_runner(self, name: str) -> None:
        """Delete a runner from GitHub; a job it was running is lost."""
        with self.lock:
            runner = self.runner(name)
            now = self.clock.now()
            if runner.job_id is not None:
                self._lose_job(runner.job_id, now, f"runner {runner.name} removed")
            del self._runners[runner.id]
            self._runner_ids.remove(runner.id)
            del self._by_name[runner.name]
            for label in runner.labels:
                self._label_index.get(label.casefold(), set()).discard(runner.id)
            self._offline_pending.pop(runner.id, None)
            self._heartbeat_due.pop(runner.id, None)
            self._bump()

    def kill(self, name: str) -> Runner:
        """The host dies: GitHub notices after the offline lag; its job is lost."""
        with self.lock:
            runner = self.runner(name)
            if not runner.alive:
                return runner
            now = self.clock.now()
            runner.alive = False
            self._offline_pending[runner.id] = now + self.config.offline_lag
            if runner.job_id is not None:
                self._lose_job(runner.job_id, now, f"runner {runner.name} died")
            return runner

    def revive(self, name: str) -> Runner:
        """The host boots again and its runner reconnects to GitHub at once."""
        with self.lock:
            runner = self.runner(name)
            if runner.alive:
                return runner
            runner.alive = True
            runner.booted_at = self.clock.now()
            self._offline_pending.pop(runner.id, None)
            # The restarted runner process no longer knows the job it was running.
            runner.job_id = None
            runner.status = "online"
            self._bump()
            return runner

    def _mark_offline(self, now: float) -> None:
        """Dead hosts whose offline lag has passed show as offline (the scheduler thread)."""
        for runner_id, at in list(self._offline_pending.items()):
            if now >= at:
                del self._offline_pending[runner_id]
                self._runners[runner_id].status = "offline"
                self._bump()

    # The host behind a runner ------------------------------------------------------------

    def set_takes_jobs(self, name: str, takes: bool) -> Runner:
        """Have the runner stop (or start again) taking jobs while GitHub still
        shows it online and idle."""
        with self.lock:
            runner = self.runner(name)
            runner.takes_jobs = takes
            return runner

    def set_heartbeats(self, name: str, enabled: bool) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.heartbeats = enabled
            return runner

    def set_heartbeat_token(self, name: str, token: str) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.heartbeat_token = token or None
            if token:
                # Spread the fleet over the interval instead of a thundering herd.
                phase = (
                    (runner.id * 7919 % 1000) / 1000 * self.config.heartbeat_interval
                )
                due = self.clock.now() + phase
                self._heartbeat_due[runner.id] = due
                heapq.heappush(self._heartbeat_heap, (due, runner.id))
            else:
                self._heartbeat_due.pop(runner.id, None)
            return runner

    def fill_disk(self, name: str, free_percent: float = 3.0) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.disk_free_bytes = int(runner.disk_total_bytes * free_percent / 100)
            return runner

    def set_load(self, name: str, load1: float) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.load1 = float(load1)
            return runner

    # Views ---------------------------------------------------------------------------------

    def _quirk_window(self) -> int:
        """The busy=false window now; 0 when the quirk does not depend on time."""
        rate = self.config.busy_false_rate
        if rate <= 0 or rate >= 1 or self.config.busy_flap_period <= 0:
            return 0
        return 1 + int(self.clock.now() // self.config.busy_flap_period)

    def reported_busy(self, runner: Runner) -> bool:
        """``busy`` as GitHub reports it: now and then false in the middle of a job."""
        rate = self.config.busy_false_rate
        if runner.job_id is None or rate <= 0:
            return runner.busy
        if rate >= 1:
            return False
        key = f"{runner.id}:{runner.job_id}:{self._quirk_window()}".encode()
        return zlib.crc32(key) / 2**32 >= rate

    def runner_json(self, runner: Runner) -> dict[str, Any]:
        """A runner as GitHub's runner endpoints answer."""
        return shapes.runner(
            runner, self._custom_label_ids, busy=self.reported_busy(runner)
        )

    def runner_view(self, runner: Runner) -> dict[str, Any]:
        """A runner as the control API shows it: GitHub's view plus the host's truth."""
        with self.lock:
            return {
                **shapes.runner(runner, self._custom_label_ids),
                "reported_busy": self.reported_busy(runner),
                "alive": runner.alive,
                "job_id": runner.job_id,
                "heartbeats": runner.heartbeats,
                "takes_jobs": runner.takes_jobs,
                "heartbeat_token_set": runner.heartbeat_token is not None,
                "heartbeat_follows_interval": runner.heartbeat_follows_interval,
                "heartbeat_interval": runner.heartbeat_interval
                or self.config.heartbeat_interval,
                "disk_free_bytes": runner.disk_free_bytes,
                "disk_total_bytes": runner.disk_total_bytes,
                "load1": runner.load1,
                "cpus": runner.cpus,
            }

    def runners_page(self, page: int, per_page: int) -> tuple[bytes, str]:
        """One page of the runner list as JSON bytes and its ETag, cached per version."""
        with self.lock:
            key = (page, per_page)
            # A page changes with the fleet, and with the busy=false window.
            current = (self.version, self._quirk_window())
            cached = self._page_cache.get(key)
            if cached is not None and cached[0] == current:
                return cached[1], cached[2]
            if cached is not None or len(self._page_cache) > 1000:
                # Any change invalidates every page; drop the stale ones together.
                self._page_cache = {
                    k: v for k, v in self._page_cache.items() if v[0] == current
                }
            start = (page - 1) * per_page
            ids = self._runner_ids[start : start + per_page]
            body = json.dumps(
                {
                    "total_count": len(self._runner_ids),
                    "runners": [self.runner_json(self._runners[i]) for i in ids],
                }
            ).encode()
            etag = f'"{hashlib.sha256(body).hexdigest()[:40]}"'
            self._page_cache[key] = (current, body, etag)
            return body, etag

    def runner_count(self) -> int:
        return len(self._runner_ids)

    def custom_label_ids(self) -> dict[str, int]:
        return self._custom_label_ids
