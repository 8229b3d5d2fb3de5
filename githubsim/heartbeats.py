"""Runner hosts' heartbeat agents: POSTs to the control plane on the simulated clock."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from githubsim.hosts import Heartbeat
from githubsim.state import SimState

TICK = 0.05  # real seconds between checks for due heartbeats
TIMEOUT = 5.0
INTERVAL_HEADER = "X-Heartbeat-Interval"


def answered_interval(value: str | None) -> float | None:
    """The next interval the control plane answered: whole seconds from 1 to 3600,
    else None (keep the fleet's interval), as the real agent reads it."""
    if value is None or not value.strip().isdigit():
        return None
    seconds = int(value.strip())
    return float(seconds) if 1 <= seconds <= 3600 else None


class HeartbeatSender:
    """Sends due heartbeats through a small pool; a host never has two in flight."""

    def __init__(self, state: SimState, workers: int = 8) -> None:
        self.state = state
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="githubsim-hb")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="githubsim-heartbeats", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            if not self.state.config.heartbeat_url:
                continue
            for beat in self.state.due_heartbeats():
                with self._lock:
                    if beat.runner_name in self._in_flight:
                        continue
                    self._in_flight.add(beat.runner_name)
                self._pool.submit(self._send, beat)

    def _send(self, beat: Heartbeat) -> None:
        url = self.state.config.heartbeat_url
        request = urllib.request.Request(
            url,
            data=json.dumps(beat.body).encode(),
            headers={
                "Authorization": f"Bearer {beat.token}",
                "Content-Type": "application/json",
                "User-Agent": "githubsim-heartbeat/1",
            },
            method="POST",
        )
        if beat.follows_interval:
            request.add_header("X-Heartbeat-Follow-Interval", "1")
        ok = False
        interval: float | None = None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                ok = 200 <= response.status < 300
                interval = answered_interval(response.headers.get(INTERVAL_HEADER))
        except (OSError, ValueError):
            ok = False
        finally:
            with self._lock:
                self._in_flight.discard(beat.runner_name)
        if ok and beat.follows_interval:
            self.state.heartbeat_answered(beat, interval)
        with self.state.lock:
            if ok:
                self.state.heartbeats_sent += 1
            else:
                self.state.heartbeats_failed += 1
