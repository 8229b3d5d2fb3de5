"""Credentials: a plain token, or a GitHub App installation token renewed early."""

from __future__ import annotations

import threading
from typing import Any

from github import Auth, GithubIntegration

from controlplane.github.errors import GitHubAuthError
from controlplane.github.types import Clock

# Installation tokens live one hour; renew this long before they expire so a token
# never dies in the middle of a paginated sync or a long rate-limit wait.
TOKEN_REFRESH_MARGIN = 300.0


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


class InstallationAuth(Auth.Auth):
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


def build_auth(
    *,
    token: str,
    app_id: int | None,
    installation_id: int | None,
    private_key: str,
    clock: Clock,
    margin: float,
    options: dict[str, Any],
) -> tuple[Auth.Auth, InstallationAuth | None]:
    """The auth for PyGithub, and the installation auth when it is one.

    ``options`` are the PyGithub client options, used for the App's own client that
    fetches installation tokens (through the same gateway exchange).
    """
    if app_id is not None and installation_id is not None and private_key:
        app_auth = _ClockedAppAuth(app_id, private_key, clock)
        integration = GithubIntegration(auth=app_auth, **options)
        installation = InstallationAuth(
            app_auth, installation_id, integration, clock, margin
        )
        return installation, installation
    if token:
        return Auth.Token(token), None
    raise GitHubAuthError("no GitHub credentials configured")
