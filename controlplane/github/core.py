"""The gateway's common part: construction, PyGithub client, error translation and
the request helpers every resource module uses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from github import Github
from github.GithubException import GithubException

from controlplane import names
from controlplane.github.auth import TOKEN_REFRESH_MARGIN, build_auth
from controlplane.github.errors import (
    GitHubAuthError,
    GitHubConflict,
    GitHubError,
    GitHubNotFound,
    GitHubUnavailable,
    GitHubValidationError,
)
from controlplane.github.paths import repository_path, segment
from controlplane.github.policy import Policy
from controlplane.github.transport import ACTIVE
from controlplane.github.types import Clock, RateBudget, Sleep, UsageSink
from controlplane.models import GitHubUsage

PER_PAGE = 100


def record_usage(counter: str, headers: Mapping[str, str] | None) -> None:
    GitHubUsage.objects.record(counter=counter, headers=dict(headers or {}))


class GatewayCore(Policy):
    """What every resource's calls share: the checked base URLs, the PyGithub client
    and its auth, error translation and the GET/POST/pagination helpers. Documented
    for callers on :class:`~controlplane.github.GitHubGateway`."""

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
        sink: UsageSink = record_usage,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Checked here, before any request: every URL below is built from them.
        self._repo_url = f"/repos/{repository_path(repository)}"
        self._org_url = (
            f"/orgs/{segment(names.Kind.ORGANIZATION, organization)}"
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
        # Run-list pages by URL, with their ETags (see RunCalls.find_run_by_token).
        self._run_pages: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self._run_pages_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._secrets = [s for s in (token, private_key) if s]
        options: dict[str, Any] = {
            "base_url": self.base_url,
            # PyGithub insists on an int; the real (float) timeout is applied per
            # request by the connection classes of the transport module.
            "timeout": max(1, int(timeout)),
            "retry": 0,
            "seconds_between_requests": None,
            "seconds_between_writes": None,
            "per_page": PER_PAGE,
        }
        auth, self._installation_auth = build_auth(
            token=token,
            app_id=app_id,
            installation_id=installation_id,
            private_key=private_key,
            clock=clock,
            margin=token_refresh_margin,
            options=options,
        )
        self._github = Github(auth=auth, lazy=True, **options)
        self._requester = self._github.requester

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
        marker = ACTIVE.set(self)
        try:
            yield
        except GithubException as exc:
            raise self._translate(operation, exc) from None
        finally:
            ACTIVE.reset(marker)

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
