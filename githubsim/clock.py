"""The simulator's clock: real time sped up by a time scale."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SimClock:
    """Epoch seconds that advance ``time_scale`` simulated seconds per real second.

    Every duration the simulator talks about (pickup delay, job duration, lease timeout,
    rate-limit windows, ``retry-after``) is in simulated seconds on this clock, so a test
    at ``time_scale=600`` sees a ten-minute lease expire in one real second. Clients that
    wait on GitHub's hints can be built to sleep on the same clock.
    """

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._lock = threading.Lock()
        self._scale = float(time_scale)
        self._anchor_sim = time.time() if start is None else float(start)
        self._anchor_real = time.monotonic()

    @property
    def time_scale(self) -> float:
        return self._scale

    def now(self) -> float:
        """Simulated epoch seconds."""
        with self._lock:
            return (
                self._anchor_sim + (time.monotonic() - self._anchor_real) * self._scale
            )

    def set_time_scale(self, time_scale: float) -> None:
        """Change the speed from now on without making the clock jump."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        with self._lock:
            real = time.monotonic()
            self._anchor_sim += (real - self._anchor_real) * self._scale
            self._anchor_real = real
            self._scale = float(time_scale)

    def advance(self, sim_seconds: float) -> None:
        """Jump the clock forward (tests use it to skip long waits such as 24 hours)."""
        with self._lock:
            self._anchor_sim += sim_seconds

    def sleep(self, sim_seconds: float) -> None:
        """Sleep until ``sim_seconds`` have passed on this clock."""
        if sim_seconds > 0:
            time.sleep(sim_seconds / self._scale)

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self._scale


def isoformat(epoch: float) -> str:
    """GitHub's timestamp format: UTC, whole seconds, ``Z`` suffix."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> float:
    """Epoch seconds from an ISO 8601 date or date-time (``Z`` or offset; naive is UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
