"""The gateway class, composed of its resource calls, and the process's one cache of
gateways (one per repository, rebuilt after a fork)."""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings

from controlplane.github.commits import CommitCalls
from controlplane.github.environments import EnvironmentCalls
from controlplane.github.hooks import HookCalls
from controlplane.github.runners import RunnerCalls
from controlplane.github.runs import RunCalls
from controlplane.github.secrets import SecretCalls


class GitHubGateway(
    RunnerCalls, RunCalls, HookCalls, SecretCalls, CommitCalls, EnvironmentCalls
):
    """Typed access to the GitHub REST API for one repository (and organization).

    1. Build it with a token, or an App id + installation id + private key.
    2. ``clock`` and ``sleep`` decide how time passes: tests pass the simulator's
       scaled clock so rate-limit waits and backoffs happen in simulated time.
    3. ``sink`` receives usage counters; by default they go to ``GitHubUsage``.

    Construction, transport and policy live in :class:`GatewayCore` and its bases;
    each base class above adds the calls for one kind of resource.
    """


_cache_lock = threading.Lock()
# Keyed by process id too: a forked worker must not share its parent's connections.
_cached: dict[tuple[int, str], GitHubGateway] = {}


def gateway_for(repository: str) -> GitHubGateway:
    """The process's gateway for ``repository``, built from settings on first use."""
    key = (os.getpid(), repository)
    with _cache_lock:
        if key not in _cached:
            _cached[key] = gateway_from_settings(repository=repository)
        return _cached[key]


def gateway() -> GitHubGateway:
    """The process's gateway for the configured repository (``GITHUB_REPOSITORY``)."""
    return gateway_for(settings.GITHUB_REPOSITORY)


def reset_gateway() -> None:
    """Forget every cached gateway (after settings change, e.g. in tests)."""
    with _cache_lock:
        _cached.clear()


def gateway_from_settings(**overrides: Any) -> GitHubGateway:
    """A new, uncached gateway from settings; ``overrides`` replace any option."""
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
