"""The one gateway to GitHub: the only module that imports PyGithub.

Callers get small typed dataclasses and typed errors, never PyGithub objects. The
gateway owns timeouts, retries with backoff, rate-limit obedience, conditional list
requests (ETag: a 304 costs no API budget), the serialization of writes and the usage
counters behind /metrics.

Every HTTP exchange PyGithub makes (pagination, installation-token fetches, retries)
passes through :meth:`GitHubGateway._exchange`, reached through the connection classes
installed below, so counting and retrying happen once per HTTP request and nowhere else.

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
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import requests
from github import Auth, Github, GithubIntegration
from github.GithubException import GithubException
from github.Requester import (
    HTTPRequestsConnectionClass,
    HTTPSRequestsConnectionClass,
    Requester,
    RequestsResponse,
)
from github.WorkflowRun import WorkflowRun
from nacl.public import PublicKey as _NaclPublicKey
from nacl.public import SealedBox

from controlplane import names

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
# sink(counter, response headers or None): one call per counted event.
UsageSink = Callable[[str, Mapping[str, str] | None], None]
SecretScope = Literal["repository", "environment", "organization"]
HookScope = Literal["repository", "organization"]

PER_PAGE = 100
# Installation tokens live one hour; renew this long before they expire so a token
# never dies in the middle of a paginated sync or a long rate-limit wait.
TOKEN_REFRESH_MARGIN = 300.0
SECONDARY_RATE_LIMIT_WAIT = 60.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
# Bound on consecutive rate-limited answers to one request (retry-after: 0 loops).
MAX_RATE_LIMIT_RETRIES = 8
MAX_DISPATCH_INPUTS = 25


# Errors ---------------------------------------------------------------------------------


class GitHubError(Exception):
    """A GitHub call failed. The message never contains a token or a secret value."""

    def __init__(
        self, message: str, *, status: int | None = None, github_message: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.github_message = github_message


class GitHubNotFound(GitHubError):
    """GitHub answered 404: the object does not exist or the token may not see it."""


class GitHubValidationError(GitHubError):
    """GitHub refused the request as invalid (400/422); ``github_message`` says why."""


class GitHubAuthError(GitHubError):
    """The credentials were refused (401) or lack a permission (403)."""


class GitHubConflict(GitHubError):
    """GitHub answered 409, e.g. cancelling a run that already completed."""


class GitHubUnavailable(GitHubError):
    """GitHub kept failing (5xx, timeouts, connection errors) after every retry."""


class GitHubAmbiguousWrite(GitHubError):
    """A non-idempotent write failed in a way that may still have taken effect.

    Not retried, so it is never sent twice; look the result up (a dispatched run by its
    correlation token) before deciding to send it again.
    """


class GitHubRateLimited(GitHubError):
    """The rate limit would have to be waited out for longer than allowed."""

    def __init__(self, message: str, *, wait_seconds: float, status: int) -> None:
        super().__init__(message, status=status)
        self.wait_seconds = wait_seconds


# Results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerInfo:
    id: int
    name: str
    os: str
    status: str
    busy: bool
    labels: tuple[str, ...]


@dataclass(frozen=True)
class RunnersPage:
    """One page of the runner list; ``not_modified`` means the ETag still matched."""

    page: int
    not_modified: bool
    runners: list[RunnerInfo]
    etag: str | None
    last_page: int | None
    total_count: int | None

    @property
    def has_next(self) -> bool:
        return self.last_page is not None and self.page < self.last_page


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    display_title: str
    status: str | None
    conclusion: str | None
    html_url: str
    head_branch: str | None
    head_sha: str
    event: str
    run_attempt: int
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class StepInfo:
    name: str
    number: int
    status: str
    conclusion: str | None


FAILED_CONCLUSIONS = ("failure", "cancelled")


@dataclass(frozen=True)
class JobInfo:
    id: int
    run_id: int
    name: str
    status: str
    conclusion: str | None
    runner_id: int | None
    runner_name: str | None
    labels: tuple[str, ...]
    html_url: str | None
    started_at: datetime | None
    completed_at: datetime | None
    steps: tuple[StepInfo, ...]

    @property
    def failed_step(self) -> StepInfo | None:
        return next((s for s in self.steps if s.conclusion == "failure"), None)

    @property
    def is_genuine_failure(self) -> bool:
        """The deploy itself failed: one of its steps failed. Never worth a failover."""
        return self.conclusion == "failure" and self.failed_step is not None

    @property
    def is_infrastructure_failure(self) -> bool:
        """The job failed or was cancelled with no failed step: the runner was lost,
        shut down or never ran it, so another runner may succeed."""
        return self.conclusion in FAILED_CONCLUSIONS and self.failed_step is None


@dataclass(frozen=True)
class DispatchResult:
    """``run_id`` is None when the server cannot return run details; find the run by
    its correlation token then."""

    run_id: int | None
    run_url: str | None
    html_url: str | None


@dataclass(frozen=True)
class HookInfo:
    id: int
    url: str
    active: bool
    events: tuple[str, ...]


@dataclass(frozen=True)
class HookDeliveryInfo:
    """One entry of a webhook's delivery log (each redelivery is an entry too)."""

    id: int
    guid: str
    event: str
    action: str | None
    status_code: int
    status: str
    redelivery: bool
    delivered_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class HookDeliveriesPage:
    deliveries: list[HookDeliveryInfo]
    # The cursor of the next (older) page from the Link header; None on the last.
    next_cursor: str | None


@dataclass(frozen=True)
class SecretInfo:
    name: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    key: str


@dataclass(frozen=True)
class RateBudget:
    remaining: int | None
    limit: int | None
    reset: int | None


# Transport hook -------------------------------------------------------------------------

# The gateway whose call is in progress in this thread or task; PyGithub's requests made
# during that call (including token fetches by the auth object) go through its exchange.
_ACTIVE: contextvars.ContextVar[GitHubGateway | None] = contextvars.ContextVar(
    "github_gateway", default=None
)


class _ExchangeMixin:
    """Sends PyGithub's requests through the active gateway's retry and counting loop.

    PyGithub hands a request to ``request()`` and collects it with ``getresponse()``
    on one shared connection object; keeping the pending request per thread lets
    threads of one web process share the gateway safely.
    """

    host: str
    port: int
    protocol: str
    timeout: int | None
    verify: bool | str
    session: requests.Session
    _pending: threading.local

    def request(
        self,
        verb: str,
        url: str,
        input: Any,
        headers: dict[str, str],
        stream: bool = False,
    ) -> None:
        self._pending.request = (verb, url, input, headers)

    def getresponse(self) -> RequestsResponse:
        verb, path, body, headers = self._pending.request
        self._pending.request = None
        gateway = _ACTIVE.get()
        timeout = gateway.timeout if gateway is not None else self.timeout

        def send() -> requests.Response:
            return self.session.request(
                verb,
                f"{self.protocol}://{self.host}:{self.port}{path}",
                headers=headers,
                data=body,
                timeout=timeout,
                verify=self.verify,
                allow_redirects=False,
            )

        if gateway is None:
            return RequestsResponse(send())
        return RequestsResponse(gateway._exchange(verb, path, send))


# The gateway builds its clients with retry=0, so urllib3 never retries behind its back.
class _HTTPConnection(_ExchangeMixin, HTTPRequestsConnectionClass):
    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._pending = threading.local()


class _HTTPSConnection(_ExchangeMixin, HTTPSRequestsConnectionClass):
    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._pending = threading.local()


Requester.injectConnectionClasses(_HTTPConnection, _HTTPSConnection)
# Injection also turns off connection reuse (it exists for PyGithub's replay tests);
# keep-alive matters for paginated syncs and the connections above are thread-safe.
Requester._Requester__persist = True  # type: ignore[attr-defined]


def _is_idempotent(verb: str, path: str) -> bool:
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


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection could not even be opened, so GitHub saw nothing."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        return type(inner).__name__ in ("NewConnectionError", "NameResolutionError")
    return False


# Auth -----------------------------------------------------------------------------------


class _ClockedAppAuth(Auth.AppAuth):
    """App JWTs dated by the gateway's clock (GitHub checks ``iat``/``exp``)."""

    def __init__(self, app_id: int, private_key: str, clock: Clock) -> None:
        super().__init__(app_id, private_key)
        self._clock = clock

    def create_jwt(self, expiration: int | None = None) -> str:
        now = int(self._clock())
        payload = {
            "iat": now - 60,  # tolerate clock drift, as GitHub recommends
            "exp": now + (expiration or 540),
            "iss": str(self.app_id),
        }
        assert self._sign_func is not None
        encoded = self._sign_func(payload)
        return encoded.decode() if isinstance(encoded, bytes) else encoded


class _InstallationAuth(Auth.Auth):
    """GitHub App installation token, renewed ``margin`` seconds before it expires.

    PyGithub's own ``AppInstallationAuth`` renews only 20 s before expiry and reads the
    wall clock; this one uses the gateway's clock and a wider margin.
    """

    def __init__(
        self,
        app_auth: _ClockedAppAuth,
        installation_id: int,
        integration: GithubIntegration,
        clock: Clock,
        margin: float,
    ) -> None:
        self._app_auth = app_auth
        self._installation_id = installation_id
        self._integration = integration
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.refreshes = 0

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._margin:
                grant = self._integration.get_access_token(self._installation_id)
                self._token = grant.token
                self._expires_at = grant.expires_at.timestamp()
                self.refreshes += 1
            return self._token

    @property
    def current_token(self) -> str | None:
        return self._token

    def invalidate(self) -> None:
        """Forget the token (GitHub refused it, e.g. revoked); the next call renews."""
        with self._lock:
            self._token = None

    @property
    def _masked_token(self) -> str:
        return "token (removed)"


# The gateway ----------------------------------------------------------------------------


def _record_usage(counter: str, headers: Mapping[str, str] | None) -> None:
    from controlplane.models import GitHubUsage

    GitHubUsage.objects.record(counter=counter, headers=dict(headers or {}))


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _last_page(link: str | None) -> int | None:
    if not link:
        return None
    for part in link.split(","):
        if 'rel="last"' in part:
            url = part.split(";")[0].strip().strip("<>")
            pages = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("page")
            if pages and pages[0].isdigit():
                return int(pages[0])
    return None


def _next_cursor(link: str | None) -> str | None:
    """The ``cursor`` of the ``rel="next"`` URL in a ``Link`` header."""
    for part in (link or "").split(","):
        if 'rel="next"' in part:
            url = part.split(";")[0].strip().strip("<>")
            cursors = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get(
                "cursor"
            )
            if cursors:
                return cursors[0]
    return None


def _segment(kind: names.Kind, value: str) -> str:
    """``value`` as one URL path segment, after checking it against GitHub's grammar
    for its kind. Callers validate names already; this is the last line, so a name
    that would steer the request elsewhere (``../../orgs/x``) never reaches HTTP."""
    message = names.problem(kind, value)
    if message is not None:
        raise GitHubValidationError(f"refusing to call GitHub: {message}")
    return urllib.parse.quote(value, safe="")


def _repository_path(repository: str) -> str:
    message = names.problem(names.Kind.REPOSITORY, repository)
    if message is not None:
        raise GitHubValidationError(f"refusing to call GitHub: {message}")
    owner, _, name = repository.partition("/")
    return (
        f"{_segment(names.Kind.OWNER, owner)}/"
        f"{_segment(names.Kind.REPOSITORY_NAME, name)}"
    )


class GitHubGateway:
    """Typed access to the GitHub REST API for one repository (and organization).

    1. Build it with a token, or an App id + installation id + private key.
    2. ``clock`` and ``sleep`` decide how time passes: tests pass the simulator's
       scaled clock so rate-limit waits and backoffs happen in simulated time.
    3. ``sink`` receives usage counters; by default they go to ``GitHubUsage``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        repository: str,
        organization: str = "",
        token: str = "",
        app_id: int | None = None,
        installation_id: int | None = None,
        private_key: str = "",
        timeout: float = 10.0,
        max_retries: int = 4,
        max_rate_limit_wait: float = 900.0,
        token_refresh_margin: float = TOKEN_REFRESH_MARGIN,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        sink: UsageSink = _record_usage,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Checked here, before any request: every URL below is built from them.
        self._repo_url = f"/repos/{_repository_path(repository)}"
        self._org_url = (
            f"/orgs/{_segment(names.Kind.ORGANIZATION, organization)}"
            if organization
            else ""
        )
        self.repository = repository
        self.organization = organization
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_rate_limit_wait = max_rate_limit_wait
        self.clock = clock
        self.sleep = sleep
        self.sink = sink
        self.budget = RateBudget(None, None, None)
        # None until a dispatch tells whether the server accepts return_run_details.
        self.run_details_supported: bool | None = None
        self._write_lock = threading.RLock()
        self._secrets = [s for s in (token, private_key) if s]
        options: dict[str, Any] = {
            "base_url": self.base_url,
            # PyGithub insists on an int; the real (float) timeout is applied per
            # request by the connection classes above.
            "timeout": max(1, int(timeout)),
            "retry": 0,
            "seconds_between_requests": None,
            "seconds_between_writes": None,
            "per_page": PER_PAGE,
        }
        self._installation_auth: _InstallationAuth | None = None
        auth: Auth.Auth
        if app_id is not None and installation_id is not None and private_key:
            app_auth = _ClockedAppAuth(app_id, private_key, clock)
            integration = GithubIntegration(auth=app_auth, **options)
            auth = self._installation_auth = _InstallationAuth(
                app_auth, installation_id, integration, clock, token_refresh_margin
            )
        elif token:
            auth = Auth.Token(token)
        else:
            raise GitHubAuthError("no GitHub credentials configured")
        self._github = Github(auth=auth, lazy=True, **options)
        self._requester = self._github.requester

    # -- transport -----------------------------------------------------------------------

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
        idempotent = _is_idempotent(verb, path)
        route = urllib.parse.urlsplit(path).path
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
                safe = idempotent or _never_sent(exc)
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

    def _scrub(self, text: str) -> str:
        secrets = list(self._secrets)
        if self._installation_auth and self._installation_auth.current_token:
            secrets.append(self._installation_auth.current_token)
        for secret in secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def _translate(self, operation: str, exc: GithubException) -> GitHubError:
        data = exc.data if isinstance(exc.data, dict) else {}
        detail = str(data.get("message") or exc.message or "")
        errors = data.get("errors")
        if errors:
            detail = f"{detail} {json.dumps(errors, default=str)}".strip()
        detail = self._scrub(detail)[:500]
        message = f"{operation}: GitHub answered {exc.status}: {detail}"
        kind: type[GitHubError] = GitHubError
        if exc.status in (401, 403):
            kind = GitHubAuthError
        elif exc.status == 404:
            kind = GitHubNotFound
        elif exc.status == 409:
            kind = GitHubConflict
        elif exc.status in (400, 422):
            kind = GitHubValidationError
        elif exc.status >= 500:
            kind = GitHubUnavailable
        return kind(message, status=exc.status, github_message=detail)

    @contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        """Route PyGithub's requests through this gateway; translate its errors."""
        marker = _ACTIVE.set(self)
        try:
            yield
        except GithubException as exc:
            raise self._translate(operation, exc) from None
        finally:
            _ACTIVE.reset(marker)

    def _get(
        self, operation: str, url: str, parameters: dict[str, Any] | None = None
    ) -> Any:
        with self._call(operation):
            _, data = self._requester.requestJsonAndCheck("GET", url, parameters)
        return data

    def _post(self, operation: str, url: str, body: Any = None) -> Any:
        with self._call(operation):
            _, data = self._requester.requestJsonAndCheck("POST", url, input=body)
        return data

    def _pages(
        self,
        operation: str,
        url: str,
        item_key: str,
        parameters: dict[str, Any] | None = None,
        *,
        max_pages: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Yield the items of every page until a short page or ``max_pages``."""
        for page in range(1, max_pages + 1):
            params = {**(parameters or {}), "per_page": PER_PAGE, "page": page}
            data = self._get(operation, url, params)
            items = data.get(item_key) or []
            yield from items
            if len(items) < PER_PAGE:
                return

    # -- runners -------------------------------------------------------------------------

    @property
    def runners_url(self) -> str:
        return f"{self._org_url or self._repo_url}/actions/runners"

    @staticmethod
    def _runner(data: Mapping[str, Any]) -> RunnerInfo:
        return RunnerInfo(
            id=int(data["id"]),
            name=str(data["name"]),
            os=str(data.get("os") or ""),
            status=str(data.get("status") or ""),
            busy=bool(data.get("busy")),
            labels=tuple(str(label["name"]) for label in data.get("labels") or ()),
        )

    def list_runners_page(
        self, page: int = 1, *, etag: str | None = None
    ) -> RunnersPage:
        """One page (100 runners) of the runner list, conditional on ``etag``.

        A 304 answer means the page is unchanged and costs no API budget; it carries
        no runners, no ``last_page`` and no total, so keep the previous page's.
        """
        headers = {"If-None-Match": etag} if etag else {}
        with self._call("list_runners_page"):
            status, response_headers, body = self._requester.requestJson(
                "GET",
                self.runners_url,
                {"per_page": PER_PAGE, "page": page},
                headers=headers,
            )
            data = json.loads(body) if body else None
            if status >= 400:
                raise Requester.createException(status, response_headers, data or {})
        last_page = _last_page(response_headers.get("link"))
        if status == 304:
            return RunnersPage(page, True, [], etag, last_page, None)
        assert isinstance(data, dict)
        runners = [self._runner(item) for item in data.get("runners") or ()]
        total = data.get("total_count")
        if last_page is None and total is not None:
            # Without a Link header (single page) derive it from the total.
            last_page = max(1, -(-int(total) // PER_PAGE))
        return RunnersPage(
            page=page,
            not_modified=False,
            runners=runners,
            etag=response_headers.get("etag"),
            last_page=last_page,
            total_count=int(total) if total is not None else None,
        )

    def get_runner(self, runner_id: int) -> RunnerInfo:
        return self._runner(self._get("get_runner", f"{self.runners_url}/{runner_id}"))

    # -- workflow runs and jobs ----------------------------------------------------------

    @staticmethod
    def _run(data: Mapping[str, Any]) -> RunInfo:
        name = str(data.get("name") or "")
        return RunInfo(
            id=int(data["id"]),
            name=name,
            display_title=str(data.get("display_title") or name),
            status=data.get("status"),
            conclusion=data.get("conclusion"),
            html_url=str(data.get("html_url") or ""),
            head_branch=data.get("head_branch"),
            head_sha=str(data.get("head_sha") or ""),
            event=str(data.get("event") or ""),
            run_attempt=int(data.get("run_attempt") or 1),
            created_at=_parse_time(data.get("created_at")),
            updated_at=_parse_time(data.get("updated_at")),
        )

    def dispatch_workflow(
        self, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> DispatchResult:
        """Dispatch ``workflow`` once. Never retried on an ambiguous failure.

        Asks for the run's details; a server that rejects ``return_run_details``
        (GitHub Enterprise Server without it) gets a plain dispatch, now and for the
        rest of this gateway's life, and the result then has no ``run_id``.
        """
        if len(inputs) > MAX_DISPATCH_INPUTS:
            raise GitHubValidationError(
                f"dispatch_workflow: GitHub accepts at most {MAX_DISPATCH_INPUTS} inputs"
            )
        _segment(names.Kind.WORKFLOW, workflow)  # PyGithub builds this URL itself
        workflow_obj = self._github.get_repo(self.repository).get_workflow(workflow)
        if self.run_details_supported is not False:
            try:
                with self._call("dispatch_workflow"):
                    # A server that answers 204 despite the field yields True.
                    run: object = workflow_obj.create_dispatch(
                        ref, dict(inputs), throw=True, return_run_details=True
                    )
            except GitHubValidationError as exc:
                if "return_run_details" not in exc.github_message:
                    raise
                # A 400/422 created nothing, so dispatching again is safe.
                logger.info("GitHub rejects return_run_details; dispatching plainly")
                self.run_details_supported = False
            else:
                if isinstance(run, WorkflowRun):
                    self.run_details_supported = True
                    return DispatchResult(run.id, run.url, run.html_url)
                return DispatchResult(None, None, None)
        with self._call("dispatch_workflow"):
            workflow_obj.create_dispatch(ref, dict(inputs), throw=True)
        return DispatchResult(None, None, None)

    def list_workflow_runs(
        self,
        workflow: str | None = None,
        *,
        created_since: datetime | None = None,
        status: str | None = None,
        event: str | None = None,
        branch: str | None = None,
        max_pages: int = 10,
    ) -> list[RunInfo]:
        """Runs newest first, all pages up to ``max_pages``, pull requests excluded."""
        if workflow is not None:
            segment = _segment(names.Kind.WORKFLOW, workflow)
            url = f"{self._repo_url}/actions/workflows/{segment}/runs"
        else:
            url = f"{self._repo_url}/actions/runs"
        # PyGithub would send exclude_pull_requests=1, which GitHub's schema rejects.
        params: dict[str, Any] = {"exclude_pull_requests": "true"}
        if created_since is not None:
            since = created_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            params["created"] = f">={since}"
        for key, value in (("status", status), ("event", event), ("branch", branch)):
            if value is not None:
                params[key] = value
        items = self._pages(
            "list_workflow_runs", url, "workflow_runs", params, max_pages=max_pages
        )
        return [self._run(item) for item in items]

    def find_run_by_token(
        self, workflow: str, token: str, created_since: datetime
    ) -> RunInfo | None:
        """The dispatched run whose run-name carries ``token``, if GitHub has it yet."""
        for run in self.list_workflow_runs(
            workflow, created_since=created_since, event="workflow_dispatch"
        ):
            if token in run.display_title or token in run.name:
                return run
        return None

    def get_run(self, run_id: int) -> RunInfo:
        return self._run(
            self._get("get_run", f"{self._repo_url}/actions/runs/{run_id}")
        )

    @staticmethod
    def _job(data: Mapping[str, Any]) -> JobInfo:
        runner_id = data.get("runner_id")
        return JobInfo(
            id=int(data["id"]),
            run_id=int(data["run_id"]),
            name=str(data.get("name") or ""),
            status=str(data.get("status") or ""),
            conclusion=data.get("conclusion"),
            runner_id=int(runner_id) if runner_id is not None else None,
            runner_name=data.get("runner_name"),
            labels=tuple(str(label) for label in data.get("labels") or ()),
            html_url=data.get("html_url"),
            started_at=_parse_time(data.get("started_at")),
            completed_at=_parse_time(data.get("completed_at")),
            steps=tuple(
                StepInfo(
                    name=str(step.get("name") or ""),
                    number=int(step.get("number") or 0),
                    status=str(step.get("status") or ""),
                    conclusion=step.get("conclusion"),
                )
                for step in data.get("steps") or ()
            ),
        )

    def list_run_jobs(self, run_id: int) -> list[JobInfo]:
        url = f"{self._repo_url}/actions/runs/{run_id}/jobs"
        return [self._job(item) for item in self._pages("list_run_jobs", url, "jobs")]

    def get_job(self, job_id: int) -> JobInfo:
        return self._job(
            self._get("get_job", f"{self._repo_url}/actions/jobs/{job_id}")
        )

    def cancel_run(self, run_id: int) -> None:
        """Ask GitHub to cancel the run (202); 409 if it already completed."""
        self._post("cancel_run", f"{self._repo_url}/actions/runs/{run_id}/cancel")

    def force_cancel_run(self, run_id: int) -> None:
        """Cancel even when the run ignores ``always()`` conditions (no PyGithub method)."""
        self._post(
            "force_cancel_run", f"{self._repo_url}/actions/runs/{run_id}/force-cancel"
        )

    # -- webhooks ------------------------------------------------------------------------

    def hooks_url(self, scope: HookScope) -> str:
        if scope == "organization":
            if not self.organization:
                raise GitHubValidationError("no GitHub organization is configured")
            return f"/orgs/{_segment(names.Kind.ORGANIZATION, self.organization)}/hooks"
        return f"{self._repo_url}/hooks"

    def list_hooks(self, scope: HookScope) -> list[HookInfo]:
        """The repository's or organization's webhooks (needs admin:*_hook read)."""
        hooks: list[HookInfo] = []
        for page in range(1, 11):
            data = self._get(
                "list_hooks",
                self.hooks_url(scope),
                {"per_page": PER_PAGE, "page": page},
            )
            for item in data or ():
                config = item.get("config") or {}
                hooks.append(
                    HookInfo(
                        id=int(item["id"]),
                        url=str(config.get("url") or ""),
                        active=bool(item.get("active")),
                        events=tuple(str(e) for e in item.get("events") or ()),
                    )
                )
            if len(data or ()) < PER_PAGE:
                break
        return hooks

    def list_hook_deliveries(
        self, scope: HookScope, hook_id: int, *, cursor: str | None = None
    ) -> HookDeliveriesPage:
        """One page of the hook's delivery log, newest first (cursor pagination)."""
        url = f"{self.hooks_url(scope)}/{hook_id}/deliveries"
        params: dict[str, Any] = {"per_page": PER_PAGE}
        if cursor:
            params["cursor"] = cursor
        with self._call("list_hook_deliveries"):
            headers, data = self._requester.requestJsonAndCheck("GET", url, params)
        deliveries = [
            HookDeliveryInfo(
                id=int(item["id"]),
                guid=str(item.get("guid") or ""),
                event=str(item.get("event") or ""),
                action=item.get("action"),
                status_code=int(item.get("status_code") or 0),
                status=str(item.get("status") or ""),
                redelivery=bool(item.get("redelivery")),
                delivered_at=_parse_time(item.get("delivered_at")),
            )
            for item in data or ()
        ]
        return HookDeliveriesPage(deliveries, _next_cursor(headers.get("link")))

    def redeliver_hook_delivery(
        self, scope: HookScope, hook_id: int, delivery_id: int
    ) -> None:
        """Ask GitHub to send a logged delivery again (202; same guid, same payload)."""
        url = f"{self.hooks_url(scope)}/{hook_id}/deliveries/{delivery_id}/attempts"
        self._post("redeliver_hook_delivery", url)

    # -- secrets -------------------------------------------------------------------------

    def _secrets_url(self, scope: SecretScope, environment: str | None) -> str:
        if scope == "repository":
            return f"{self._repo_url}/actions/secrets"
        if scope == "environment":
            if not environment:
                raise GitHubValidationError("environment secrets need an environment")
            segment = _segment(names.Kind.ENVIRONMENT, environment)
            return f"{self._repo_url}/environments/{segment}/secrets"
        if scope == "organization":
            if not self._org_url:
                raise GitHubValidationError(
                    "organization secrets need the GITHUB_ORGANIZATION setting"
                )
            return f"{self._org_url}/actions/secrets"
        raise GitHubValidationError(f"unknown secret scope {scope!r}")

    def list_secrets(
        self, scope: SecretScope, environment: str | None = None
    ) -> list[SecretInfo]:
        """Names and dates of every secret in the scope (GitHub never returns values)."""
        url = self._secrets_url(scope, environment)
        return [
            SecretInfo(
                name=str(item["name"]),
                created_at=_parse_time(item.get("created_at")),
                updated_at=_parse_time(item.get("updated_at")),
            )
            for item in self._pages("list_secrets", url, "secrets")
        ]

    def get_public_key(
        self, scope: SecretScope, environment: str | None = None
    ) -> PublicKey:
        url = f"{self._secrets_url(scope, environment)}/public-key"
        data = self._get("get_public_key", url)
        return PublicKey(key_id=str(data["key_id"]), key=str(data["key"]))

    def put_secret(
        self,
        scope: SecretScope,
        name: str,
        value: str,
        environment: str | None = None,
    ) -> str:
        """Create or replace a secret; returns the id of the key that sealed it.

        The value is sealed here with a public key fetched in this same call and only
        the sealed box leaves the process. It is never logged or put in an error.
        """
        base = self._secrets_url(scope, environment)
        url = f"{base}/{_segment(names.Kind.SECRET, name)}"
        key = self.get_public_key(scope, environment)
        box = SealedBox(_NaclPublicKey(base64.b64decode(key.key)))
        sealed = base64.b64encode(box.encrypt(value.encode())).decode()
        body: dict[str, Any] = {"encrypted_value": sealed, "key_id": key.key_id}
        if scope == "organization":
            body["visibility"] = self._org_secret_visibility(url)
        with self._call("put_secret"):
            self._requester.requestJsonAndCheck("PUT", url, input=body)
        return key.key_id

    def _org_secret_visibility(self, url: str) -> str:
        # PUT requires a visibility; keep an existing secret's rather than widening or
        # narrowing who can read it as a side effect of a rotation.
        try:
            return str(self._get("put_secret", url).get("visibility") or "private")
        except GitHubNotFound:
            return "private"

    # -- budget --------------------------------------------------------------------------

    def rate_limit(self) -> RateBudget:
        """The core budget as GitHub reports it (this call itself is free)."""
        data = self._get("rate_limit", "/rate_limit")
        core = (data.get("resources") or {}).get("core") or data.get("rate") or {}
        return RateBudget(core.get("remaining"), core.get("limit"), core.get("reset"))

    @property
    def installation_token_refreshes(self) -> int:
        """How many installation tokens this gateway fetched (0 with a plain token)."""
        return self._installation_auth.refreshes if self._installation_auth else 0


_cache_lock = threading.Lock()
_cached: tuple[int, GitHubGateway] | None = None


def gateway() -> GitHubGateway:
    """The process's gateway, built from settings on first use (rebuilt after fork)."""
    global _cached
    with _cache_lock:
        if _cached is None or _cached[0] != os.getpid():
            _cached = (os.getpid(), gateway_from_settings())
        return _cached[1]


def reset_gateway() -> None:
    """Forget the cached gateway (after settings change, e.g. in tests)."""
    global _cached
    with _cache_lock:
        _cached = None


def gateway_from_settings(**overrides: Any) -> GitHubGateway:
    from django.conf import settings

    options: dict[str, Any] = {
        "base_url": settings.GITHUB_API_URL,
        "repository": settings.GITHUB_REPOSITORY,
        "organization": settings.GITHUB_ORGANIZATION,
        "timeout": settings.GITHUB_TIMEOUT,
        "max_retries": settings.GITHUB_MAX_RETRIES,
        "max_rate_limit_wait": settings.GITHUB_MAX_RATE_LIMIT_WAIT,
    }
    if settings.GITHUB_APP_ID:
        options.update(
            app_id=int(settings.GITHUB_APP_ID),
            installation_id=int(settings.GITHUB_APP_INSTALLATION_ID),
            private_key=settings.GITHUB_APP_PRIVATE_KEY,
        )
    else:
        options["token"] = settings.GITHUB_TOKEN
    options.update(overrides)
    return GitHubGateway(**options)
