"""Rate-limit budgets, installation tokens, injected faults and request counters."""

from __future__ import annotations

import hashlib
import secrets as random_tokens
import threading
from collections import Counter
from random import Random

from githubsim.clock import SimClock, isoformat
from githubsim.models import Config, Faults


def digest(token: str) -> str:
    """Tokens are only ever kept as digests, even in the simulator."""
    return hashlib.sha256(token.encode()).hexdigest()


class Limits:
    """What GitHub counts per token and per endpoint, on the simulated clock."""

    def __init__(
        self, lock: threading.RLock, clock: SimClock, config: Config, random: Random
    ) -> None:
        self.lock = lock
        self.clock = clock
        self.config = config
        self.random = random
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # token digest -> [window reset epoch, used]
            self._budgets: dict[str, list[float]] = {}
            # token digest -> (expiry, app id)
            self._installation_tokens: dict[str, tuple[float, int]] = {}
            self._requests: Counter[str] = Counter()

    def budget(self, token: str) -> tuple[int, int, int, int]:
        """(limit, remaining, used, reset epoch) of a token's current hourly window."""
        with self.lock:
            now = self.clock.now()
            window = self._budgets.get(digest(token))
            if window is None or now >= window[0]:
                window = [now + self.config.rate_limit_window, 0.0]
                self._budgets[digest(token)] = window
            limit = self.config.rate_limit
            used = int(window[1])
            return limit, max(0, limit - used), used, int(window[0])

    def spend(self, token: str) -> None:
        with self.lock:
            self.budget(token)
            self._budgets[digest(token)][1] += 1

    def pick_fault(self, faults: Faults) -> str | None:
        """Which injected fault, if any, answers this request."""
        with self.lock:
            roll = self.random.random()
            for name, rate in (
                ("error", faults.error_rate),
                ("rate_limit", faults.rate_limit_rate),
                ("secondary_rate_limit", faults.secondary_rate_limit_rate),
                ("too_many_requests", faults.too_many_requests_rate),
            ):
                if roll < rate:
                    return name
                roll -= rate
            return None

    def issue_installation_token(self, app_id: int = 1) -> tuple[str, str]:
        """A new ``ghs_`` token of app ``app_id``'s installation and its expiry (ISO),
        valid for the configured lifetime."""
        with self.lock:
            token = "ghs_" + random_tokens.token_urlsafe(27)
            expires = self.clock.now() + self.config.installation_token_lifetime
            self._installation_tokens[digest(token)] = (expires, app_id)
            return token, isoformat(expires)

    def token_expired(self, token: str) -> bool:
        """Installation tokens expire; any other token is accepted."""
        with self.lock:
            issued = self._installation_tokens.get(digest(token))
            return issued is not None and self.clock.now() >= issued[0]

    def app_of_token(self, token: str) -> int | None:
        """The GitHub App whose installation token this is (None: not one)."""
        with self.lock:
            issued = self._installation_tokens.get(digest(token))
            return issued[1] if issued is not None else None

    def count_request(self, route: str) -> None:
        with self.lock:
            self._requests[route] += 1

    def request_count(self, route: str | None = None) -> int:
        with self.lock:
            if route is None:
                return sum(self._requests.values())
            return self._requests[route]

    def request_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self._requests)

    def reset_request_counts(self) -> None:
        with self.lock:
            self._requests.clear()
