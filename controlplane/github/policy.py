"""How the gateway treats each HTTP request: retries, backoff, rate limits, budget.

Retry policy, per HTTP request:

- 5xx answers, timeouts and connection errors are retried with exponential backoff and
  full jitter, at most ``max_retries`` times, for idempotent requests only: GETs, PUTs,
  DELETEs, run cancellation and installation-token creation.
- A workflow dispatch is not idempotent: GitHub may have created the run before
  answering 502 or before the connection dropped. It is retried only when the request
  certainly never reached GitHub (the connection could not be opened) or was refused by
  a rate limit; any other failure raises :class:`GitHubAmbiguousWrite` and the caller
  reconciles by looking the run up by its correlation token.
- Rate limits (403/429) are waited out on the injected clock: ``retry-after`` first,
  then ``x-ratelimit-reset`` when the budget is spent, else (secondary limits) at least
  60 s doubling each time. A wait beyond ``max_rate_limit_wait`` raises
  :class:`GitHubRateLimited` instead.
- A 304 answer to a conditional request (ETag) is counted as ``not_modified_total``:
  GitHub does not charge it to the budget.
"""

from __future__ import annotations

import logging
import random
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from contextlib import nullcontext

import requests
from github.Requester import Requester

from controlplane.github.auth import InstallationAuth
from controlplane.github.errors import (
    GitHubAmbiguousWrite,
    GitHubRateLimited,
    GitHubUnavailable,
)
from controlplane.github.purpose import Purpose, for_purpose
from controlplane.github.types import Clock, RateBudget, Sleep, UsageSink

logger = logging.getLogger(__name__)

SECONDARY_RATE_LIMIT_WAIT = 60.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
# Bound on consecutive rate-limited answers to one request (retry-after: 0 loops).
MAX_RATE_LIMIT_RETRIES = 8


def is_idempotent(verb: str, path: str) -> bool:
    """Whether sending this request twice has the same effect as sending it once."""
    if verb in ("GET", "HEAD", "PUT", "DELETE"):
        return True
    route = urllib.parse.urlsplit(path).path
    # Cancelling twice is harmless (the second answers 409), an extra installation
    # token simply expires and a webhook redelivered twice is deduplicated by its
    # guid; a dispatch or anything unknown is not safe to repeat.
    return verb == "POST" and route.endswith(
        ("/cancel", "/force-cancel", "/access_tokens", "/attempts")
    )


def never_sent(exc: requests.RequestException) -> bool:
    """True when the connection could not even be opened, so GitHub saw nothing."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        return type(inner).__name__ in ("NewConnectionError", "NameResolutionError")
    return False


class Policy:
    """The exchange loop of :class:`~controlplane.github.GitHubGateway`."""

    timeout: float
    max_retries: int
    max_rate_limit_wait: float
    clock: Clock
    sleep: Sleep
    sink: UsageSink
    budget: RateBudget
    _write_lock: threading.RLock
    _installation_auth: InstallationAuth | None

    def _count(self, counter: str, headers: Mapping[str, str] | None = None) -> None:
        try:
            self.sink(counter, headers)
        except Exception:
            # Metrics must never break a deploy; the log says the count was lost.
            logger.warning("could not record GitHub usage counter %s", counter)

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retries of many workers apart.
        return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))

    def _rate_limit_wait(
        self, response: requests.Response, headers: Mapping[str, str], streak: int
    ) -> float | None:
        """Seconds to wait before retrying, or None if this is not a rate limit."""
        status = response.status_code
        if status not in (403, 429):
            return None
        retry_after = headers.get("retry-after")
        remaining = headers.get("x-ratelimit-remaining")
        if status == 403 and retry_after is None and remaining != "0":
            try:
                message = str(response.json().get("message", ""))
            except ValueError:
                message = ""
            if not Requester.isRateLimitError(message):
                return None  # a permission problem, not a limit
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        reset = headers.get("x-ratelimit-reset")
        if remaining == "0" and reset is not None and reset.isdigit():
            return max(0.0, int(reset) - self.clock()) + 1.0
        # Secondary limit without a hint: GitHub asks for at least a minute, growing.
        return SECONDARY_RATE_LIMIT_WAIT * 2.0**streak

    def _exchange(
        self, verb: str, path: str, send: Callable[[], requests.Response]
    ) -> requests.Response:
        """Send one request: count every attempt, retry what is safe, obey limits."""
        idempotent = is_idempotent(verb, path)
        route = urllib.parse.urlsplit(path).path
        if route.endswith("/access_tokens"):
            # Counted apart from the call that happened to need a fresh token.
            with for_purpose(Purpose.INSTALLATION_TOKEN):
                return self._send(verb, route, idempotent, send)
        return self._send(verb, route, idempotent, send)

    def _send(
        self,
        verb: str,
        route: str,
        idempotent: bool,
        send: Callable[[], requests.Response],
    ) -> requests.Response:
        retries = 0
        streak = 0
        waited = 0.0
        while True:
            lock = self._write_lock if verb != "GET" else nullcontext()
            try:
                with lock:
                    response = send()
            except requests.RequestException as exc:
                self._count("requests_total")
                self._count("errors_total")
                safe = idempotent or never_sent(exc)
                if safe and retries < self.max_retries:
                    retries += 1
                    self._count("retries_total")
                    self.sleep(self._backoff(retries))
                    continue
                kind = type(exc).__name__
                if not safe:
                    raise GitHubAmbiguousWrite(
                        f"{verb} {route} may or may not have reached GitHub ({kind})"
                    ) from None
                raise GitHubUnavailable(
                    f"{verb} {route} failed after {retries} retries ({kind})"
                ) from None
            headers = {k.lower(): v for k, v in response.headers.items()}
            self._note_budget(headers)
            self._count("requests_total", headers)
            status = response.status_code
            if status == 304:
                self._count("not_modified_total")
            wait = self._rate_limit_wait(response, headers, streak)
            if wait is not None:
                self._count("rate_limited_total")
                streak += 1
                if waited + wait > self.max_rate_limit_wait:
                    raise GitHubRateLimited(
                        f"GitHub rate limit on {verb} {route}: would wait {wait:.0f} s "
                        f"more, the limit is {self.max_rate_limit_wait:.0f} s",
                        wait_seconds=wait,
                        status=status,
                    )
                if streak > MAX_RATE_LIMIT_RETRIES:
                    raise GitHubRateLimited(
                        f"GitHub rate limit on {verb} {route} persisted after "
                        f"{MAX_RATE_LIMIT_RETRIES} waits",
                        wait_seconds=wait,
                        status=status,
                    )
                logger.info(
                    "GitHub rate limit on %s %s: waiting %.1f s", verb, route, wait
                )
                waited += wait
                self.sleep(wait)
                self._count("retries_total")
                continue
            if status >= 400:
                self._count("errors_total")
            if status == 401 and self._installation_auth is not None:
                self._installation_auth.invalidate()
            if status >= 500:
                if not idempotent:
                    raise GitHubAmbiguousWrite(
                        f"{verb} {route}: GitHub answered {status}; the write may have "
                        "taken effect",
                        status=status,
                    )
                if retries < self.max_retries:
                    retries += 1
                    self._count("retries_total")
                    self.sleep(self._backoff(retries))
                    continue
            return response

    def _note_budget(self, headers: Mapping[str, str]) -> None:
        def number(name: str) -> int | None:
            value = headers.get(name)
            return int(value) if value is not None and value.isdigit() else None

        if "x-ratelimit-remaining" in headers:
            self.budget = RateBudget(
                number("x-ratelimit-remaining"),
                number("x-ratelimit-limit"),
                number("x-ratelimit-reset"),
            )
