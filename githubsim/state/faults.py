"""Injected faults, the simulator's settings and the per-route request counts."""

from __future__ import annotations

from typing import Any

from githubsim.errors import ApiError
from githubsim.models import Config, Faults
from githubsim.state.core import StateCore
from githubsim.state.releases import VERSION


class FaultsMixin(StateCore):
    """Changing faults and settings from the control API, and reading request counts."""

    def set_faults(self, **changes: Any) -> Faults:
        with self.lock:
            for key, value in changes.items():
                if not hasattr(self.faults, key):
                    raise ApiError(422, f"Unknown fault {key!r}")
                setattr(self.faults, key, coerce(key, getattr(self.faults, key), value))
            return self.faults

    def set_config(self, **changes: Any) -> Config:
        with self.lock:
            for key, value in changes.items():
                if key == "time_scale":
                    self.clock.set_time_scale(coerce(key, 1.0, value))
                    continue
                if not hasattr(self.config, key):
                    raise ApiError(422, f"Unknown setting {key!r}")
                setattr(self.config, key, coerce(key, getattr(self.config, key), value))
            if self.config.webhook_scope not in ("repository", "organization"):
                self.config.webhook_scope = "repository"
                raise ApiError(422, "webhook_scope must be repository or organization")
            if self.config.busy_false_rate > 1:
                self.config.busy_false_rate = 1.0
                raise ApiError(422, "busy_false_rate is a share from 0 to 1")
            if not VERSION.match(self.config.runner_version):
                self.config.runner_version = "2.330.0"
                raise ApiError(422, "runner_version looks like 2.330.0")
            if self.config.outcome not in ("success", "failure"):
                self.config.outcome = "success"
                raise ApiError(422, "outcome must be success or failure")
            return self.config

    def request_count(self, route: str | None = None) -> int:
        """Requests received for one route, or in total.

        Routes read like ``"GET /repos/{owner}/{repo}/actions/runners"``. Counts include
        answers that were faults, 304s and rate-limit refusals.
        """
        return self.limits.request_count(route)

    def request_counts(self) -> dict[str, int]:
        return self.limits.request_counts()

    def reset_request_counts(self) -> None:
        self.limits.reset_request_counts()


def coerce(key: str, current: Any, value: Any) -> Any:
    """``value`` converted to the type of the setting it replaces, or a 422."""
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        converted = type(current)(value)
    except (TypeError, ValueError):
        raise ApiError(422, f"{key} cannot be {value!r}") from None
    if isinstance(converted, int | float) and converted < 0:
        raise ApiError(422, f"{key} cannot be negative")
    return converted
